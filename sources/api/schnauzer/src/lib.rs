//! # Background
//!
//! Configuration files on a Ballast host are rendered from settings with
//! [handlebars](https://docs.rs/handlebars) templates; this crate holds the rendering setup and
//! the template helpers (Bottlerocket calls its equivalent "schnauzer"). The config renderer
//! (`thar-be-settings`) reads a template, builds the context `{"settings": ..., "os": ...}` and
//! calls [`render_template`].
//!
//! The registry is set up for configuration files, not HTML:
//! * no escaping: `{{x}}` writes the value as is (use `toml_escape` or `json` where the file
//!   format needs quoting);
//! * not strict: a missing optional setting renders as empty text and is false in `{{#if}}`.
//!
//! The helpers are listed in [`helpers`].
//!
//! # Usage
//!
//! ```
//! use serde_json::json;
//!
//! let context = json!({"settings": {"ntp": {"time-servers": ["https://a.example", "b.example:123"]}}});
//! let text = schnauzer::render_template(
//!     "timesyncd-conf",
//!     "NTP={{#each settings.ntp.time-servers}}{{#unless @first}} {{/unless}}{{host this}}{{/each}}\n",
//!     &context,
//! )
//! .unwrap();
//! assert_eq!(text, "NTP=a.example b.example\n");
//!
//! let err = schnauzer::render_template("t", "line one\n{{host settings}}\n", &context).unwrap_err();
//! assert_eq!(err.line(), Some(2));
//! assert!(err.to_string().starts_with("template t failed to render at line 2"));
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod helpers;

pub use error::{Error, Result};

use handlebars::Handlebars;
use serde_json::Value;

/// A handlebars registry for configuration files: no escaping, not strict, every helper of
/// [`helpers`] registered.
pub fn registry() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.register_escape_fn(handlebars::no_escape);
    registry.set_strict_mode(false);
    helpers::register(&mut registry);
    registry
}

/// Compiles `template` (named `name` in errors, usually its path) and renders it with `context`.
pub fn render_template(name: &str, template: &str, context: &Value) -> Result<String> {
    let mut registry = registry();
    registry
        .register_template_string(name, template)
        .map_err(|e| {
            let (line, column) = e.pos().unzip();
            Error::Syntax {
                name: name.to_string(),
                line,
                column,
                reason: e.reason().to_string(),
            }
        })?;
    registry.render(name, context).map_err(|e| Error::Render {
        name: name.to_string(),
        line: e.line_no,
        column: e.column_no,
        reason: e.reason().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_without_escaping_and_missing_values_are_empty() {
        let text = render_template(
            "t",
            "a={{settings.a}} b=[{{settings.missing.deep}}]",
            &json!({"settings": {"a": "<&\"'>"}}),
        )
        .unwrap();
        assert_eq!(text, "a=<&\"'> b=[]");
    }

    #[test]
    fn hyphenated_keys_and_helpers_compose() {
        let text = render_template(
            "t",
            "{{join settings.dns.search-list \" \"}}|{{toml_escape (host settings.p)}}|{{port settings.p}}",
            &json!({"settings": {"dns": {"search-list": ["a.example", "b.example"]}, "p": "[::1]:80"}}),
        )
        .unwrap();
        assert_eq!(text, "a.example b.example|\"::1\"|80");
    }

    #[test]
    fn syntax_errors_name_template_and_line() {
        let err = render_template("/t/broken", "ok\nok\n{{#each x}}\n", &json!({})).unwrap_err();
        assert!(matches!(err, Error::Syntax { .. }), "{err:?}");
        assert_eq!(err.template(), "/t/broken");
        let message = err.to_string();
        assert!(message.contains("/t/broken"), "{message}");
        assert!(message.contains("line "), "{message}");
    }

    #[test]
    fn helper_errors_name_helper_template_and_line() {
        let err = render_template(
            "/t/certs",
            "# header\n{{base64_decode settings.data}}\n",
            &json!({"settings": {"data": "%%%"}}),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Render { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("/t/certs"), "{message}");
        assert!(message.contains("base64_decode"), "{message}");
        assert_eq!(err.line(), Some(2), "{message}");
    }

    #[test]
    fn wrong_parameter_count_is_explained() {
        let message = render_template("t", "{{join settings.x}}", &json!({}))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("helper 'join': got 1 parameters"),
            "{message}"
        );
    }
}
