//! Validated scalar types used by the settings model.
//!
//! Every type here can only hold a value that passed its rules, so code that receives a
//! [`crate::Settings`] never re-checks a hostname or a sysctl key. Each string type offers:
//! * `TryFrom<&str>`, `TryFrom<String>` and `FromStr`, failing with [`InvalidValue`];
//! * serde support, where deserializing runs the same check, so a bad value in a settings document
//!   fails with a reason such as `'Bad_Host' is not a valid hostname: contains 'B'; ...`;
//! * `Display`, `Deref<Target = str>`, `AsRef<str>`, `Borrow<str>` (maps keyed by these types can
//!   be looked up with a plain `&str`), and `as_str()` / `into_inner()`;
//! * a hand-written OpenAPI schema (`utoipa::PartialSchema` + `utoipa::ToSchema`) of type string,
//!   with a pattern and length limits where they describe the rule.
//!
//! Every type refuses control characters (C0, DEL and C1, which includes U+0085) and the Unicode
//! line and paragraph separators U+2028/U+2029.
//!
//! The two choices worth knowing before using them:
//! * [`Url`] accepts either an absolute `http`/`https` URL or a bare `host[:port]` (for NTP servers
//!   and proxies written without a scheme). Other schemes are refused.
//! * [`BootConfigValue`] may be empty; a kernel parameter given as a flag (no `=`) is written as an
//!   empty list of values instead.

pub use crate::error::InvalidValue;

use base64::Engine as _;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::str::FromStr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// Builds the OpenAPI schema shared by the string types.
fn string_schema(
    description: &str,
    pattern: Option<&str>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    example: &str,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .min_length(min_length)
        .max_length(max_length)
        .examples([example])
}

/// Implements the common surface of a validated string newtype. `$check` is a
/// `fn(&str) -> Result<(), String>` whose error is the reason shown to the user.
macro_rules! string_type {
    (
        $(#[$doc:meta])*
        $name:ident,
        kind: $kind:literal,
        check: $check:path,
        $(shown: $shown:path,)?
        schema: $schema:expr $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            inner: String,
        }

        impl $name {
            /// The kind of value, as named in error messages.
            pub const KIND: &'static str = $kind;

            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.inner
            }

            /// Gives back the validated value as a `String`.
            pub fn into_inner(self) -> String {
                self.inner
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidValue;

            fn try_from(input: &str) -> Result<Self, InvalidValue> {
                $check(input).map_err(|reason| {
                    InvalidValue::new(&string_type!(@shown input $(, $shown)?), $kind, reason)
                })?;
                Ok($name {
                    inner: input.to_owned(),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;

            fn try_from(input: String) -> Result<Self, InvalidValue> {
                let text = input.as_str();
                $check(text).map_err(|reason| {
                    InvalidValue::new(&string_type!(@shown text $(, $shown)?), $kind, reason)
                })?;
                Ok($name { inner: input })
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(input: &str) -> Result<Self, InvalidValue> {
                Self::try_from(input)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.inner)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.inner
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.inner
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.inner
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.inner
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.inner == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.inner == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.inner)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl de::Visitor<'_> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a string ({})", $kind)
                    }

                    fn visit_str<E: de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::try_from(value).map_err(E::custom)
                    }

                    fn visit_string<E: de::Error>(self, value: String) -> Result<$name, E> {
                        $name::try_from(value).map_err(E::custom)
                    }
                }

                deserializer.deserialize_string(Visitor)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let builder: ObjectBuilder = $schema;
                builder.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
    (@shown $input:ident) => {
        $input
    };
    (@shown $input:ident, $shown:path) => {
        $shown($input)
    };
}

/// Implements a closed set of lowercase words as a Rust enum.
macro_rules! enum_type {
    (
        $(#[$doc:meta])*
        $name:ident,
        kind: $kind:literal,
        description: $description:literal,
        { $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// The kind of value, as named in error messages.
            pub const KIND: &'static str = $kind;

            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase word used in settings documents.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidValue;

            fn try_from(input: &str) -> Result<Self, InvalidValue> {
                match input {
                    $( $text => Ok($name::$variant), )+
                    _ => {
                        let words: Vec<&str> = vec![$($text),+];
                        Err(InvalidValue::new(
                            input,
                            $kind,
                            format!("expected one of {}", words.join(", ")),
                        ))
                    }
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(input: &str) -> Result<Self, InvalidValue> {
                Self::try_from(input)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;

                impl de::Visitor<'_> for Visitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a string ({})", $kind)
                    }

                    fn visit_str<E: de::Error>(self, value: &str) -> Result<$name, E> {
                        $name::try_from(value).map_err(E::custom)
                    }
                }

                deserializer.deserialize_str(Visitor)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($description))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

// ---------------------------------------------------------------------------------------------
// Shared checks. Each returns the reason a value is refused, phrased to follow "is not a valid X: ".

/// Line terminators as Unicode defines them (UAX #14 mandatory breaks).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Names a character for an error message: printable ones quoted, others as U+XXXX.
fn show_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() || is_line_break(c) {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}

fn no_control(input: &str) -> Result<(), String> {
    if let Some(c) = input.chars().find(|&c| c.is_control() || is_line_break(c)) {
        return Err(format!("contains the control character {}", show_char(c)));
    }
    Ok(())
}

fn no_whitespace(input: &str) -> Result<(), String> {
    if let Some(c) = input.chars().find(|c| c.is_whitespace()) {
        return Err(format!("contains whitespace ({})", show_char(c)));
    }
    Ok(())
}

fn not_empty(input: &str) -> Result<(), String> {
    if input.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(())
}

fn max_chars(input: &str, max: usize) -> Result<(), String> {
    let count = input.chars().count();
    if count > max {
        return Err(format!(
            "is {count} characters long; at most {max} are allowed"
        ));
    }
    Ok(())
}

/// Refuses the first character that `allowed` rejects, explaining what is allowed.
fn only_chars(input: &str, allowed: fn(char) -> bool, description: &str) -> Result<(), String> {
    if let Some(c) = input.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "contains {}; only {description} are allowed",
            show_char(c)
        ));
    }
    Ok(())
}

/// DNS label rules shared by hostnames and domains: labels of 1 to 63 characters that neither
/// start nor end with '-'. Character set and total length are checked by the caller.
fn dns_labels(name: &str) -> Result<(), String> {
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (a leading, trailing or doubled '.')".to_string());
        }
        if label.len() > 63 {
            return Err(format!(
                "label '{label}' is {} characters long; at most 63 are allowed",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label '{label}' must not start or end with '-'"));
        }
    }
    Ok(())
}

fn decode_base64(input: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(input)
        .map_err(|e| format!("is not standard base64 with padding ({e})"))
}

// ---------------------------------------------------------------------------------------------
// SingleLineString

fn check_single_line(input: &str) -> Result<(), String> {
    if let Some(c) = input.chars().find(|&c| is_line_break(c)) {
        return Err(format!(
            "contains a line break ({}); it must be a single line",
            show_char(c)
        ));
    }
    no_control(input)
}

string_type! {
    /// Text on one line: no line terminators (`\n`, `\r`, VT, FF, U+0085, U+2028, U+2029) and no
    /// other control characters, tab included. May be empty; no length limit.
    SingleLineString,
    kind: "single-line string",
    check: check_single_line,
    schema: string_schema(
        "Text on a single line, without control characters.",
        Some(r"^[^\u0000-\u001F\u007F-\u009F\u2028\u2029]*$"),
        None,
        None,
        "Welcome to Ballast!",
    ),
}

// ---------------------------------------------------------------------------------------------
// ValidBase64

/// Canonical standard base64: whole groups of four, the last one padded, and no stray bits in
/// the character before the padding (the decoder refuses those).
const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// One lowercase DNS label: 1 to 63 characters, not starting or ending with '-'.
const LOWER_LABEL: &str = "[0-9a-z](?:[0-9a-z-]{0,61}[0-9a-z])?";

/// One DNS label of either case.
const LABEL: &str = "[0-9A-Za-z](?:[0-9A-Za-z-]{0,61}[0-9A-Za-z])?";

fn check_base64(input: &str) -> Result<(), String> {
    no_control(input)?;
    decode_base64(input).map(|_| ())
}

string_type! {
    /// Standard base64 (RFC 4648 alphabet, with padding, no line breaks). May be empty.
    ValidBase64,
    kind: "base64 value",
    check: check_base64,
    schema: string_schema(
        "Standard base64 (RFC 4648 alphabet with padding, no line breaks).",
        Some(BASE64_PATTERN),
        None,
        None,
        "aGVsbG8K",
    )
    .content_encoding("base64"),
}

impl ValidBase64 {
    /// The decoded bytes; cannot fail since the value was checked on the way in.
    pub fn decode(&self) -> Vec<u8> {
        decode_base64(&self.inner).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// ValidLinuxHostname

fn check_hostname(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(
        input,
        |c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '-'),
        "lowercase letters a-z, digits, '.' and '-'",
    )?;
    max_chars(input, 253)?;
    dns_labels(input)
}

string_type! {
    /// A Linux hostname: 1 to 253 characters from `[0-9a-z.-]`, made of dot-separated labels of
    /// 1 to 63 characters that neither start nor end with `-`. Uppercase is refused rather than
    /// folded, so what is stored is exactly what the kernel gets.
    ValidLinuxHostname,
    kind: "hostname",
    check: check_hostname,
    schema: string_schema(
        "Linux hostname: lowercase letters, digits, '.' and '-'; labels of 1 to 63 characters \
         that do not start or end with '-'.",
        Some(&*format!("^{LOWER_LABEL}(?:\\.{LOWER_LABEL})*$")),
        Some(1),
        Some(253),
        "node-1.example.internal",
    ),
}

// ---------------------------------------------------------------------------------------------
// Url

const URL_MAX_CHARS: usize = 2048;

/// IPv4 addresses in dotted decimal without leading zeros, as Rust reads them (unanchored).
fn ipv4_pattern() -> String {
    let octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    format!(r"(?:{octet}\.){{3}}{octet}")
}

/// IPv6 addresses written in full or with one `::` before the last group (unanchored): a
/// subset of the forms Rust reads.
fn ipv6_pattern() -> String {
    let group = "[0-9A-Fa-f]{1,4}";
    format!("(?:(?:{group}:){{7}}{group}|(?:{group}:){{1,6}}:{group})")
}

/// The schema of a list of IP addresses, such as `settings.dns.name-servers`.
pub fn ip_address_list_schema() -> utoipa::openapi::schema::Array {
    let address = string_schema(
        "IPv4 or IPv6 address.",
        Some(&*format!("^(?:{}|{})$", ipv4_pattern(), ipv6_pattern())),
        Some(1),
        None,
        "10.0.0.2",
    );
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(address)
        .build()
}

/// The forms of [`Url`] as a pattern: `http(s)://host[:port][/path]` or a bare `host[:port]`,
/// where host is a name whose last label starts with a letter, an IPv4 address or an IPv6
/// address in brackets. It leaves out rarer forms the check accepts (query strings, user
/// information, unbracketed IPv6), so that what it allows is accepted.
fn url_pattern() -> String {
    let host = url_host_pattern();
    format!(r"^(?:https?://{host}(?:/[A-Za-z0-9._~/-]*)?|{host})$")
}

/// `host[:port]` of [`url_pattern`], unanchored.
fn url_host_pattern() -> String {
    let ipv4 = ipv4_pattern();
    let ipv6 = format!(r"\[{}\]", ipv6_pattern());
    let name = host_name_pattern();
    let port = port_pattern();
    format!("(?:{name}|{ipv4}|{ipv6})(?::{port})?")
}

/// A host name of [`url_host_pattern`], unanchored.
fn host_name_pattern() -> String {
    format!(r"(?:{LABEL}\.){{0,3}}[A-Za-z](?:[0-9A-Za-z-]{{0,61}}[0-9A-Za-z])?")
}

/// A port number from 1 to 65535, unanchored.
fn port_pattern() -> &'static str {
    "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
}

/// The absolute `http(s)://host[:port][/path]` form of [`url_pattern`]: what [`HttpUrl`] takes.
fn http_url_pattern() -> String {
    format!(r"^https?://{}(?:/[A-Za-z0-9._~/-]*)?$", url_host_pattern())
}

/// [`PauseUntil`]'s words, or an RFC 3339 time with plausible fields (a day past the end of its
/// month still matches, and is refused by the check).
fn pause_until_pattern() -> String {
    let date = "[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";
    let time = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?";
    let offset = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
    format!("^(?:{PAUSE_NONE}|{PAUSE_INDEFINITE}|{date}T{time}{offset})$")
}

fn check_url(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    no_whitespace(input)?;
    max_chars(input, URL_MAX_CHARS)?;
    if input.contains("://") {
        let parsed = url::Url::parse(input).map_err(|e| format!("cannot be parsed ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "scheme '{}' is not supported; use http or https, or give a bare host[:port]",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("has no host".to_string());
        }
        Ok(())
    } else {
        check_host_port(input)
            .map_err(|e| format!("is neither an http(s) URL nor a host[:port]: {e}"))
    }
}

/// `host`, `host:port`, an IP address, or `[ipv6]:port`.
fn check_host_port(input: &str) -> Result<(), String> {
    if input.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let port = if let Some(rest) = input.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| "'[' has no closing ']'".to_string())?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("'{address}' in brackets is not an IPv6 address"))?;
        if after.is_empty() {
            return Ok(());
        }
        after
            .strip_prefix(':')
            .ok_or_else(|| format!("unexpected '{after}' after ']'"))?
    } else {
        match input.rsplit_once(':') {
            None => return check_host_name(input),
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address with a port must be written [address]:port".into())
            }
            Some((host, port)) => {
                check_host_name(host)?;
                port
            }
        }
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("port '{port}' is not a number from 1 to 65535")),
    }
}

/// A host name or IPv4 address without port.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() {
        return Err("host is empty".to_string());
    }
    if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        return Err(format!(
            "host '{host}' contains {}; only letters, digits, '.' and '-' are allowed",
            show_char(c)
        ));
    }
    if host.len() > 253 {
        return Err(format!(
            "host is {} characters long; at most 253 are allowed",
            host.len()
        ));
    }
    dns_labels(host).map_err(|e| format!("host '{host}' {e}"))?;
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "host '{host}' is neither an IPv4 address nor a name (its last label is numeric)"
        ));
    }
    Ok(())
}

/// Replaces the `user:password@` part of a URL by `***@`, so that a refused proxy URL does not
/// put a password into error messages and logs.
fn hide_userinfo(input: &str) -> String {
    if let Some((scheme, rest)) = input.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    input.to_string()
}

string_type! {
    /// Where to reach a server. Two forms are accepted:
    /// * an absolute URL with scheme `http` or `https` and a host, e.g. `https://mirror.example.com/v2`
    ///   or `http://user:pass@proxy:3128`;
    /// * a bare `host[:port]`, e.g. `pool.ntp.org`, `10.0.0.1:123`, `[fd00::1]:123` or `fd00::1`.
    ///   This form exists for NTP servers and for proxies written without a scheme.
    ///
    /// Anything containing `://` is judged as a URL, so `ftp://x` is refused instead of being read as
    /// a host. No whitespace, at most 2048 characters. The value is stored as written, not normalized.
    Url,
    kind: "URL",
    check: check_url,
    shown: hide_userinfo,
    schema: string_schema(
        "An absolute http or https URL, or a bare host[:port] (host name, IPv4 address, or IPv6 \
         address in brackets when a port follows).",
        Some(&url_pattern()),
        Some(1),
        Some(URL_MAX_CHARS),
        "https://updates.example.com/metadata",
    ),
}

impl Url {
    /// True when the value is a bare `host[:port]` rather than a URL with a scheme.
    pub fn is_bare_host(&self) -> bool {
        !self.inner.contains("://")
    }
}

// ---------------------------------------------------------------------------------------------
// DnsDomain

fn check_dns_domain(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(
        input,
        |c| c.is_ascii_alphanumeric() || c == '.' || c == '-',
        "letters, digits, '.' and '-'",
    )?;
    let name = input.strip_suffix('.').unwrap_or(input);
    if name.is_empty() {
        return Err("names no domain".to_string());
    }
    max_chars(name, 253)?;
    dns_labels(name)
}

string_type! {
    /// A DNS domain such as a resolver search-list entry: letters, digits and `-` in dot-separated
    /// labels of 1 to 63 characters (not starting or ending with `-`), at most 253 characters, with
    /// one optional trailing `.`. Case is kept as written.
    DnsDomain,
    kind: "DNS domain",
    check: check_dns_domain,
    schema: string_schema(
        "DNS domain name: dot-separated labels of letters, digits and '-', optional trailing '.'.",
        Some(&*format!("^{LABEL}(?:\\.{LABEL})*\\.?$")),
        Some(1),
        Some(254),
        "corp.example.com",
    ),
}

// ---------------------------------------------------------------------------------------------
// SysctlKey

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Where the model stores sysctl values: `settings.kernel.sysctl.<key>`.
pub const SYSCTL_PARENT: &str = "settings.kernel.sysctl";

/// Longest sysctl key: the longest whose every form (up to a separator at every other
/// character) is storable below [`SYSCTL_PARENT`], derived from the key grammar's limits.
pub const MAX_SYSCTL_KEY_LEN: usize = settings_key::max_separated_segment_len(SYSCTL_PARENT);

fn check_sysctl_key(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(
        input,
        |c| is_name_char(c) || c == '.' || c == '/',
        "letters, digits, '_', '-' and the separators '.' and '/'",
    )?;
    max_chars(input, MAX_SYSCTL_KEY_LEN)?;
    if input.starts_with('-') {
        // systemd-sysctl reads a leading '-' as "ignore errors", not as part of the name.
        return Err("must not start with '-'".to_string());
    }
    if input.split(['.', '/']).any(str::is_empty) {
        return Err("has an empty segment (a leading, trailing or doubled separator)".to_string());
    }
    Ok(())
}

string_type! {
    /// A sysctl name such as `net.ipv4.ip_forward` or `net/ipv4/conf/eth0.100/rp_filter`:
    /// non-empty segments of `[A-Za-z0-9_-]` separated by `.` or `/`, at most
    /// [`MAX_SYSCTL_KEY_LEN`] characters, not starting with `-` (systemd-sysctl would read that
    /// as a flag). Globs are not supported.
    SysctlKey,
    kind: "sysctl key",
    check: check_sysctl_key,
    schema: string_schema(
        "Sysctl name: segments of letters, digits, '_' and '-' separated by '.' or '/'.",
        Some(r"^[A-Za-z0-9_][A-Za-z0-9_-]*([./][A-Za-z0-9_-]+)*$"),
        Some(1),
        Some(MAX_SYSCTL_KEY_LEN),
        "net.ipv4.ip_forward",
    ),
}

// ---------------------------------------------------------------------------------------------
// KmodKey

fn check_kmod_key(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(input, is_name_char, "letters, digits, '_' and '-'")?;
    max_chars(input, 64)?;
    if input.starts_with('-') {
        return Err("must not start with '-'".to_string());
    }
    Ok(())
}

string_type! {
    /// A kernel module name: 1 to 64 characters from `[A-Za-z0-9_-]`, not starting with `-`.
    KmodKey,
    kind: "kernel module name",
    check: check_kmod_key,
    schema: string_schema(
        "Kernel module name: letters, digits, '_' and '-'.",
        Some("^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$"),
        Some(1),
        Some(64),
        "nf_conntrack",
    ),
}

// ---------------------------------------------------------------------------------------------
// Identifier

fn check_identifier(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(
        input,
        |c| c.is_ascii_alphanumeric() || c == '-',
        "letters, digits and '-'",
    )?;
    max_chars(input, 76)?;
    if input.starts_with('-') {
        // These names end up as command-line arguments and unit instance names.
        return Err("must not start with '-'".to_string());
    }
    Ok(())
}

string_type! {
    /// A name for a host container, bootstrap container or PKI bundle: 1 to 76 ASCII letters,
    /// digits and `-`, not starting with `-` (the name is passed on command lines).
    Identifier,
    kind: "identifier",
    check: check_identifier,
    schema: string_schema(
        "Name made of letters, digits and '-', not starting with '-'.",
        Some("^[A-Za-z0-9][A-Za-z0-9-]{0,75}$"),
        Some(1),
        Some(76),
        "admin",
    ),
}

// ---------------------------------------------------------------------------------------------
// FriendlyVersion

fn check_numeric_part(part: &str) -> bool {
    !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'))
        && part.parse::<u64>().is_ok()
}

fn check_dotted_identifiers(part: &str) -> bool {
    part.split('.')
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn check_friendly_version(input: &str) -> Result<(), String> {
    no_control(input)?;
    if input == FriendlyVersion::LATEST {
        return Ok(());
    }
    let expected = "expected 'latest' or a version such as 1.2.3 or v1.2.3";
    let version = input.strip_prefix('v').unwrap_or(input);
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() != 3 || !numbers.iter().all(|n| check_numeric_part(n)) {
        return Err(format!("{expected} (three numbers without leading zeros)"));
    }
    if pre.is_some_and(|p| !check_dotted_identifiers(p)) {
        return Err(format!("{expected}; the part after '-' is malformed"));
    }
    if build.is_some_and(|b| !check_dotted_identifiers(b)) {
        return Err(format!("{expected}; the part after '+' is malformed"));
    }
    Ok(())
}

string_type! {
    /// A version to lock updates to: `latest`, or a semantic version `x.y.z` with an optional
    /// leading `v` and optional `-prerelease` / `+build` parts, e.g. `1.4.0` or `v1.4.0-rc1`.
    FriendlyVersion,
    kind: "version",
    check: check_friendly_version,
    schema: string_schema(
        "'latest', or a version x.y.z with optional leading 'v'.",
        Some(
            r"^(latest|v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)$",
        ),
        Some(1),
        None,
        "latest",
    ),
}

impl FriendlyVersion {
    /// The word meaning "no lock, take the newest version".
    pub const LATEST: &'static str = "latest";

    /// True for `latest`.
    pub fn is_latest(&self) -> bool {
        self.inner == Self::LATEST
    }

    /// The version without a leading `v`, or `None` for `latest`.
    pub fn version_number(&self) -> Option<&str> {
        if self.is_latest() {
            None
        } else {
            Some(self.inner.strip_prefix('v').unwrap_or(&self.inner))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timezone

fn check_timezone(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    if input.contains("..") {
        return Err("must not contain '..'".to_string());
    }
    if input.starts_with('/') {
        return Err("must not start with '/'; give a name such as Europe/Paris".to_string());
    }
    only_chars(
        input,
        |c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'),
        "letters, digits, '/', '_', '+' and '-'",
    )?;
    max_chars(input, 64)?;
    if input.split('/').any(str::is_empty) {
        return Err("has an empty path segment (a trailing or doubled '/')".to_string());
    }
    Ok(())
}

string_type! {
    /// An IANA time zone name such as `America/New_York`, `Etc/GMT+5` or `UTC`: 1 to 64 characters
    /// from `[A-Za-z0-9/_+-]`, no leading `/`, no empty segment, no `..`. Whether the zone exists
    /// in the image's tz database is not checked here.
    Timezone,
    kind: "timezone",
    check: check_timezone,
    schema: string_schema(
        "IANA time zone name, e.g. America/New_York or Etc/UTC.",
        Some("^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"),
        Some(1),
        Some(64),
        "Etc/UTC",
    ),
}

// ---------------------------------------------------------------------------------------------
// BootConfigKey / BootConfigValue

/// The longer of the two places boot parameter names are stored under
/// (`settings.boot.kernel-parameters` and `settings.boot.init-parameters`).
pub const BOOT_PARAMETERS_PARENT: &str = "settings.boot.kernel-parameters";

/// Longest boot parameter name: the longest whose every form is storable below
/// [`BOOT_PARAMETERS_PARENT`], derived from the key grammar's limits.
pub const MAX_BOOT_CONFIG_KEY_LEN: usize =
    settings_key::max_separated_segment_len(BOOT_PARAMETERS_PARENT);

fn check_boot_config_key(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    only_chars(
        input,
        |c| is_name_char(c) || c == '.',
        "letters, digits, '_', '-' and '.'",
    )?;
    max_chars(input, MAX_BOOT_CONFIG_KEY_LEN)?;
    if input.split('.').any(str::is_empty) {
        return Err("has an empty segment (a leading, trailing or doubled '.')".to_string());
    }
    Ok(())
}

string_type! {
    /// The name of a kernel or init parameter, e.g. `console` or `systemd.log_level`: segments of
    /// `[A-Za-z0-9_-]` separated by `.`, 1 to [`MAX_BOOT_CONFIG_KEY_LEN`] characters.
    BootConfigKey,
    kind: "boot parameter name",
    check: check_boot_config_key,
    schema: string_schema(
        "Kernel or init parameter name: segments of letters, digits, '_' and '-' separated by '.'.",
        Some(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
        Some(1),
        Some(MAX_BOOT_CONFIG_KEY_LEN),
        "console",
    ),
}

fn check_boot_config_value(input: &str) -> Result<(), String> {
    no_control(input)?;
    no_whitespace(input)?;
    if input.contains(['"', '\'']) {
        return Err("must not contain quotes".to_string());
    }
    max_chars(input, 1024)
}

string_type! {
    /// One value of a kernel or init parameter, e.g. `ttyS0,115200`. No whitespace, quotes or
    /// control characters, at most 1024 characters.
    ///
    /// An empty value is allowed and means the parameter is given with an empty value (`key=`).
    /// A flag parameter without `=` (e.g. `quiet`) is expressed as an empty list of values.
    BootConfigValue,
    kind: "boot parameter value",
    check: check_boot_config_value,
    schema: string_schema(
        "Kernel or init parameter value: no whitespace, quotes or control characters; may be empty.",
        Some(r#"^[^\s"'\u0000-\u001F\u007F-\u009F]*$"#),
        None,
        Some(1024),
        "ttyS0,115200",
    ),
}

// ---------------------------------------------------------------------------------------------
// PemCertificateString

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

fn decode_pem(input: &str) -> Result<String, String> {
    let bytes = decode_base64(input)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "decodes to bytes that are not UTF-8 text".to_string())?;
    let begin = text
        .find(PEM_BEGIN)
        .ok_or_else(|| format!("decoded text has no '{PEM_BEGIN}' line"))?;
    if !text[begin..].contains(PEM_END) {
        return Err(format!(
            "decoded text has no '{PEM_END}' line after its first certificate start"
        ));
    }
    Ok(text)
}

/// The base64 of PEM text that starts with [`PEM_BEGIN`], goes on with ASCII text and ends
/// with a line break, [`PEM_END`] and a line break. Base64 encodes three bytes as four
/// characters, so the pattern spells the encoded begin line (27 bytes, a whole number of
/// groups), groups of four that decode to three ASCII bytes, and the encoded end in each of the
/// three alignments it can have (0 to 2 ASCII bytes before it). A bundle the check accepts may
/// look otherwise (text before the first block, no final line break).
fn pem_pattern() -> String {
    // Each group decodes to three bytes below 0x80: the first character is one of the first 32
    // of the alphabet, the second has bit 3 of its index clear, the third bit 1.
    let ascii_group = "[A-Za-f][A-HQ-Xg-nw-z0-3][ABEFIJMNQRUVYZcdghklopstwx014589][A-Za-z0-9+/]";
    let begin = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t";
    let end = [
        "Ci0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K",
        "[A-Za-f][AQgw]otLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==",
        "[A-Za-f][A-HQ-Xg-nw-z0-3][048AEIMQUYcgkosw]KLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
    ];
    format!("^{begin}(?:{ascii_group})*(?:{})$", end.join("|"))
}

fn check_pem(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    decode_pem(input).map(|_| ())
}

string_type! {
    /// Base64 of a PEM bundle holding at least one certificate (`-----BEGIN CERTIFICATE-----` ...
    /// `-----END CERTIFICATE-----`). The certificate contents are not parsed here.
    PemCertificateString,
    kind: "PEM certificate bundle",
    check: check_pem,
    schema: string_schema(
        "Base64 of a PEM bundle: text that starts with a CERTIFICATE block's first line and \
         ends with a block's last line and a newline.",
        Some(&pem_pattern()),
        Some(1),
        None,
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCi4uLgotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==",
    )
    .content_encoding("base64")
    .content_media_type("application/x-pem-file"),
}

impl PemCertificateString {
    /// The decoded PEM text; cannot fail since the value was checked on the way in.
    pub fn pem(&self) -> String {
        decode_pem(&self.inner).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// ImageReference

fn check_image_reference(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    no_whitespace(input)?;
    max_chars(input, 255)?;
    if input.starts_with('-') {
        return Err("must not start with '-'".to_string());
    }
    Ok(())
}

string_type! {
    /// A container image reference such as `registry.example.com/ballast-admin:v0.1.0` or one
    /// pinned by digest. Checked for shape only (one token, 1 to 255 characters, no whitespace or
    /// control characters, not starting with `-`); the registry is the judge of the rest.
    ImageReference,
    kind: "image reference",
    check: check_image_reference,
    schema: string_schema(
        "Container image reference, e.g. registry.example.com/admin:v1.0.0.",
        Some(r"^[^\s\x00-\x1F\x7F-\x9F\-][^\s\x00-\x1F\x7F-\x9F]*$"),
        Some(1),
        Some(255),
        "registry.example.com/ballast-admin:v0.1.0",
    ),
}

// ---------------------------------------------------------------------------------------------
// Enumerations

enum_type! {
    /// Kernel lockdown mode (see `kernel_lockdown(7)`).
    Lockdown,
    kind: "lockdown mode",
    description: "Kernel lockdown mode: none, integrity or confidentiality.",
    {
        /// No lockdown.
        None => "none",
        /// Block changes to the running kernel.
        Integrity => "integrity",
        /// Also block reading kernel memory.
        Confidentiality => "confidentiality",
    }
}

enum_type! {
    /// When a bootstrap container runs.
    BootstrapContainerMode,
    kind: "bootstrap container mode",
    description: "When a bootstrap container runs: off, once (next boot only) or always.",
    {
        /// Never.
        Off => "off",
        /// On the next boot, after which the mode becomes `off`.
        Once => "once",
        /// On every boot.
        Always => "always",
    }
}

// ---------------------------------------------------------------------------------------------
// Workload defaults (`settings.oci-defaults`)

enum_type! {
    /// A Linux capability, by Bottlerocket's name for it in `settings.oci-defaults.capabilities`
    /// (the kernel's name in lowercase, without `CAP_`, `_` written as `-`).
    OciCapability,
    kind: "capability",
    description: "Linux capability, e.g. net-bind-service for CAP_NET_BIND_SERVICE.",
    {
        AuditControl => "audit-control",
        AuditRead => "audit-read",
        AuditWrite => "audit-write",
        BlockSuspend => "block-suspend",
        Bpf => "bpf",
        CheckpointRestore => "checkpoint-restore",
        Chown => "chown",
        DacOverride => "dac-override",
        DacReadSearch => "dac-read-search",
        Fowner => "fowner",
        Fsetid => "fsetid",
        IpcLock => "ipc-lock",
        IpcOwner => "ipc-owner",
        Kill => "kill",
        Lease => "lease",
        LinuxImmutable => "linux-immutable",
        MacAdmin => "mac-admin",
        MacOverride => "mac-override",
        Mknod => "mknod",
        NetAdmin => "net-admin",
        NetBindService => "net-bind-service",
        NetBroadcast => "net-broadcast",
        NetRaw => "net-raw",
        Perfmon => "perfmon",
        Setfcap => "setfcap",
        Setgid => "setgid",
        Setpcap => "setpcap",
        Setuid => "setuid",
        SysAdmin => "sys-admin",
        SysBoot => "sys-boot",
        SysChroot => "sys-chroot",
        SysModule => "sys-module",
        SysNice => "sys-nice",
        SysPacct => "sys-pacct",
        SysPtrace => "sys-ptrace",
        SysRawio => "sys-rawio",
        SysResource => "sys-resource",
        SysTime => "sys-time",
        SysTtyConfig => "sys-tty-config",
        Syslog => "syslog",
        WakeAlarm => "wake-alarm",
    }
}

impl OciCapability {
    /// The name the kernel and the OCI runtime spec use, e.g. `CAP_NET_BIND_SERVICE`.
    pub fn linux_name(&self) -> String {
        format!(
            "CAP_{}",
            self.as_str().to_ascii_uppercase().replace('-', "_")
        )
    }
}

enum_type! {
    /// A process resource limit, by Bottlerocket's name for it in
    /// `settings.oci-defaults.resource-limits`.
    OciResourceLimitType,
    kind: "resource limit",
    description: "Process resource limit, e.g. max-open-files for RLIMIT_NOFILE.",
    {
        MaxAddressSpace => "max-address-space",
        MaxCoreFileSize => "max-core-file-size",
        MaxCpuTime => "max-cpu-time",
        MaxDataSize => "max-data-size",
        MaxFileLocks => "max-file-locks",
        MaxFileSize => "max-file-size",
        MaxLockedMemory => "max-locked-memory",
        MaxMsgqueueSize => "max-msgqueue-size",
        MaxNicePriority => "max-nice-priority",
        MaxOpenFiles => "max-open-files",
        MaxPendingSignals => "max-pending-signals",
        MaxProcesses => "max-processes",
        MaxRealtimePriority => "max-realtime-priority",
        MaxRealtimeTimeout => "max-realtime-timeout",
        MaxResidentSet => "max-resident-set",
        MaxStackSize => "max-stack-size",
    }
}

impl OciResourceLimitType {
    /// The name the OCI runtime spec uses, e.g. `RLIMIT_NOFILE`.
    pub fn linux_name(&self) -> &'static str {
        match self {
            OciResourceLimitType::MaxAddressSpace => "RLIMIT_AS",
            OciResourceLimitType::MaxCoreFileSize => "RLIMIT_CORE",
            OciResourceLimitType::MaxCpuTime => "RLIMIT_CPU",
            OciResourceLimitType::MaxDataSize => "RLIMIT_DATA",
            OciResourceLimitType::MaxFileLocks => "RLIMIT_LOCKS",
            OciResourceLimitType::MaxFileSize => "RLIMIT_FSIZE",
            OciResourceLimitType::MaxLockedMemory => "RLIMIT_MEMLOCK",
            OciResourceLimitType::MaxMsgqueueSize => "RLIMIT_MSGQUEUE",
            OciResourceLimitType::MaxNicePriority => "RLIMIT_NICE",
            OciResourceLimitType::MaxOpenFiles => "RLIMIT_NOFILE",
            OciResourceLimitType::MaxPendingSignals => "RLIMIT_SIGPENDING",
            OciResourceLimitType::MaxProcesses => "RLIMIT_NPROC",
            OciResourceLimitType::MaxRealtimePriority => "RLIMIT_RTPRIO",
            OciResourceLimitType::MaxRealtimeTimeout => "RLIMIT_RTTIME",
            OciResourceLimitType::MaxResidentSet => "RLIMIT_RSS",
            OciResourceLimitType::MaxStackSize => "RLIMIT_STACK",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Update policy types (`settings.updates`)

enum_type! {
    /// What the node's update daemon does by itself (`settings.updates.policy`).
    UpdatePolicy,
    kind: "update policy",
    description: "What the update daemon does by itself: manual (nothing), check (look for updates), stage (also download and write them), auto (also reboot into them inside a maintenance window).",
    {
        /// Nothing: updates happen only when someone calls the update API.
        Manual => "manual",
        /// Look for updates on a schedule and report what is available.
        Check => "check",
        /// Also download and write the chosen update to the inactive partitions.
        Stage => "stage",
        /// Also reboot into it, inside a maintenance window and holding the fleet lock.
        Auto => "auto",
    }
}

enum_type! {
    /// A day of the week, as its three-letter English abbreviation in lowercase.
    Weekday,
    kind: "day of the week",
    description: "Day of the week: mon, tue, wed, thu, fri, sat or sun.",
    {
        /// Monday.
        Mon => "mon",
        /// Tuesday.
        Tue => "tue",
        /// Wednesday.
        Wed => "wed",
        /// Thursday.
        Thu => "thu",
        /// Friday.
        Fri => "fri",
        /// Saturday.
        Sat => "sat",
        /// Sunday.
        Sun => "sun",
    }
}

impl Weekday {
    /// Days since Monday (Monday is 0, Sunday 6).
    pub fn days_from_monday(self) -> u8 {
        match self {
            Weekday::Mon => 0,
            Weekday::Tue => 1,
            Weekday::Wed => 2,
            Weekday::Thu => 3,
            Weekday::Fri => 4,
            Weekday::Sat => 5,
            Weekday::Sun => 6,
        }
    }
}

/// Splits `HH:MM` into hour and minute, or says why it cannot.
fn parse_time_of_day(input: &str) -> Result<(u8, u8), String> {
    let expected = "expected HH:MM on a 24-hour clock, from 00:00 to 23:59";
    let (hour, minute) = input.split_once(':').ok_or_else(|| expected.to_string())?;
    if hour.len() != 2 || minute.len() != 2 {
        return Err(expected.to_string());
    }
    let hour: u8 = hour.parse().map_err(|_| expected.to_string())?;
    let minute: u8 = minute.parse().map_err(|_| expected.to_string())?;
    if hour > 23 {
        return Err(format!("hour {hour} is past 23; {expected}"));
    }
    if minute > 59 {
        return Err(format!("minute {minute} is past 59; {expected}"));
    }
    Ok((hour, minute))
}

fn check_time_of_day(input: &str) -> Result<(), String> {
    no_control(input)?;
    parse_time_of_day(input).map(|_| ())
}

string_type! {
    /// A wall-clock time of day, `HH:MM` on a 24-hour clock (`00:00` to `23:59`), such as the
    /// start of a maintenance window.
    TimeOfDay,
    kind: "time of day",
    check: check_time_of_day,
    schema: string_schema(
        "Time of day HH:MM, 24-hour clock.",
        Some("^([01][0-9]|2[0-3]):[0-5][0-9]$"),
        Some(5),
        Some(5),
        "02:30",
    ),
}

impl TimeOfDay {
    /// Hour (0 to 23) and minute (0 to 59).
    pub fn hour_minute(&self) -> (u8, u8) {
        // Checked when the value was made.
        parse_time_of_day(&self.inner).unwrap_or((0, 0))
    }
}

/// The units of a setting's duration, in the order they must be written, each with its length
/// in seconds and the most digits its number may have. The digit limits keep the longest
/// duration (99d999h99999m9999999s, about 326 days) under a year, so the grammar alone bounds
/// it and the API document's pattern ([`setting_duration_pattern`]) is exactly what is accepted.
const DURATION_UNITS: [(char, u64, usize); 4] =
    [('d', 86_400, 2), ('h', 3_600, 3), ('m', 60, 5), ('s', 1, 7)];

/// The anchored pattern of a setting's duration, made from [`DURATION_UNITS`]: each unit at
/// most once, in the order d, h, m, s, each number without a leading zero.
pub fn setting_duration_pattern() -> String {
    let parts: String = DURATION_UNITS
        .iter()
        .map(|(unit, _, digits)| format!("([1-9][0-9]{{0,{}}}{unit})?", digits - 1))
        .collect();
    format!("^{parts}$")
}

/// Reads `1h30m`, `90s`, `2d`: one or more numbers, each followed by its unit, in the order
/// d, h, m, s, each unit at most once (see [`DURATION_UNITS`]).
fn parse_setting_duration(input: &str) -> Result<u64, String> {
    let expected = "expected numbers with units in the order d, h, m, s, such as 90s, 10m, 1h30m \
                    or 2d";
    if input.is_empty() {
        return Err(format!("is empty; {expected}"));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    // The index in DURATION_UNITS the next unit must come at or after.
    let mut next_unit = 0;
    for c in input.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let Some(at) = DURATION_UNITS.iter().position(|(unit, _, _)| *unit == c) else {
            return Err(format!("contains {}; {expected}", show_char(c)));
        };
        let (unit, seconds, digits) = DURATION_UNITS[at];
        if at < next_unit {
            return Err(format!(
                "has '{unit}' out of place; each unit comes at most once, in the order d, h, m, s"
            ));
        }
        next_unit = at + 1;
        if number.is_empty() {
            return Err(format!("has a unit without a number; {expected}"));
        }
        if number.starts_with('0') {
            return Err(format!(
                "has '{number}{unit}'; write each number without leading zeros, and leave out \
                 units of zero"
            ));
        }
        if number.len() > digits {
            return Err(format!(
                "has '{number}{unit}'; at most {digits} digits before '{unit}' (use a larger unit)"
            ));
        }
        let value: u64 = number
            .parse()
            .map_err(|_| format!("has a number that is too long; {expected}"))?;
        number.clear();
        total += value * seconds;
    }
    if !number.is_empty() {
        return Err(format!("ends in a number without a unit; {expected}"));
    }
    Ok(total)
}

fn check_setting_duration(input: &str) -> Result<(), String> {
    no_control(input)?;
    parse_setting_duration(input).map(|_| ())
}

string_type! {
    /// A length of time such as `90s`, `10m`, `1h30m` or `2d`: numbers each followed by a unit,
    /// in the order `d`, `h`, `m`, `s`, each unit at most once (at least one second, under a
    /// year; see [`DURATION_UNITS`]).
    SettingDuration,
    kind: "duration",
    check: check_setting_duration,
    schema: string_schema(
        "Duration: numbers with units in the order d, h, m, s, each at most once, e.g. 1h30m.",
        Some(&setting_duration_pattern()),
        Some(2),
        Some(32),
        "1h",
    ),
}

impl SettingDuration {
    /// The length in whole seconds.
    pub fn seconds(&self) -> u64 {
        parse_setting_duration(&self.inner).unwrap_or(1)
    }

    /// The length as a [`std::time::Duration`].
    pub fn as_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds())
    }
}

fn check_http_url(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    max_chars(input, URL_MAX_CHARS)?;
    let parsed = url::Url::parse(input)
        .map_err(|e| format!("{e}; give an absolute URL such as https://fleetlock.example.com"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "has scheme '{}'; only http and https are allowed",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("names no host".to_string());
    }
    Ok(())
}

string_type! {
    /// An absolute `http` or `https` URL with a host, such as a FleetLock server's base URL
    /// (`https://fleetlock.example.com`). Unlike [`Url`], a bare host is refused.
    HttpUrl,
    kind: "http(s) URL",
    check: check_http_url,
    shown: hide_userinfo,
    schema: string_schema(
        "Absolute http or https URL.",
        Some(&http_url_pattern()),
        Some(8),
        Some(URL_MAX_CHARS),
        "https://fleetlock.example.com",
    ),
}

fn check_journal_remote_url(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    no_whitespace(input)?;
    max_chars(input, URL_MAX_CHARS)?;
    let Some((scheme, authority)) = input.split_once("://") else {
        return Err(
            "has no scheme; give http://host[:port] of a systemd-journal-remote receiver"
                .to_string(),
        );
    };
    if scheme == "https" {
        // systemd-journal-upload over https loads a client key and certificate and a CA file
        // that no setting provides yet; it would fail on every attempt.
        return Err(
            "uses https, which needs a client certificate and key for systemd-journal-upload \
             that Ballast cannot configure yet; use http://host[:port]"
                .to_string(),
        );
    }
    if scheme != "http" {
        return Err(format!("has scheme '{scheme}'; only http is allowed"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(
            "has a path, query or fragment; give only http(s)://host[:port], because \
             systemd-journal-upload adds /upload itself"
                .to_string(),
        );
    }
    if authority.contains('@') {
        return Err("carries user information; the receiver takes none".to_string());
    }
    if authority.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "an IPv6 address must be written in brackets with a port, as [{authority}]:19532"
        ));
    }
    if authority.starts_with('[') && authority.ends_with(']') {
        // systemd-journal-upload adds its default port only to a host without ':'.
        return Err(format!(
            "an IPv6 address needs a port, as {authority}:19532 (the uploader adds its \
             default port only to a host without ':')"
        ));
    }
    check_host_port(authority)
}

/// `http://host[:port]` without anything after the authority, an IPv6 address only in
/// brackets and with a port: what [`JournalRemoteUrl`] takes.
fn journal_remote_url_pattern() -> String {
    let name = host_name_pattern();
    let ipv4 = ipv4_pattern();
    let ipv6 = ipv6_pattern();
    let port = port_pattern();
    format!(r"^http://(?:(?:{name}|{ipv4})(?::{port})?|\[{ipv6}\]:{port})$")
}

string_type! {
    /// Where `systemd-journal-upload` sends the journal: `http://host[:port]` of a
    /// `systemd-journal-remote` receiver. Without a port the uploader uses the receiver's
    /// 19532. A path, query, fragment or user information is refused: the uploader appends
    /// `/upload` to the value as given, so any of them would make a URL the receiver does not
    /// serve. `https` is refused too: over https systemd 252's uploader loads a client key and
    /// certificate and a CA file, which no setting provides yet, so it could never connect.
    JournalRemoteUrl,
    kind: "journal receiver URL",
    check: check_journal_remote_url,
    schema: string_schema(
        "http://host[:port] of a systemd-journal-remote receiver.",
        Some(&journal_remote_url_pattern()),
        Some(8),
        Some(URL_MAX_CHARS),
        "http://logs.example.com:19532",
    ),
}

/// The unit types a [`SystemdUnitName`] may end in.
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "mount",
    "automount",
    "timer",
    "path",
    "swap",
    "slice",
    "scope",
    "device",
];

fn check_systemd_unit_name(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    max_chars(input, 255)?;
    only_chars(
        input,
        |c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c),
        "letters, digits and ':', '-', '_', '.', '\\', '@'",
    )?;
    if input.starts_with('-') || input.starts_with('.') {
        // The name is passed to systemctl as an argument.
        return Err("must not start with '-' or '.'".to_string());
    }
    match input.rsplit_once('.') {
        Some((name, kind)) if !name.is_empty() && UNIT_TYPES.contains(&kind) => Ok(()),
        _ => Err(format!(
            "does not end in a unit type; name it in full, e.g. {input}.service (types: {})",
            UNIT_TYPES.join(", ")
        )),
    }
}

string_type! {
    /// A systemd unit named in full with its type, such as `containerd.service` or
    /// `kubelet.socket`: the characters systemd allows, not starting with `-` or `.`.
    SystemdUnitName,
    kind: "systemd unit name",
    check: check_systemd_unit_name,
    schema: string_schema(
        "systemd unit with its type, e.g. containerd.service.",
        Some(&format!(
            r"^[A-Za-z0-9:_\\@][A-Za-z0-9:_.\\@-]{{0,240}}\.(?:{})$",
            UNIT_TYPES.join("|")
        )),
        Some(3),
        Some(255),
        "containerd.service",
    ),
}

fn check_local_http_url(input: &str) -> Result<(), String> {
    no_control(input)?;
    not_empty(input)?;
    no_whitespace(input)?;
    max_chars(input, URL_MAX_CHARS)?;
    let parsed = url::Url::parse(input).map_err(|e| {
        format!("{e}; give a URL on the node such as http://127.0.0.1:8080/healthz")
    })?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "has scheme '{}'; a probe speaks plain http to the node itself",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("carries user information; a probe sends none".to_string());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        return Err(format!(
            "names host '{}', which is not the node; probes reach only 127.0.0.0/8, [::1] \
             and localhost, so a check never depends on another machine",
            parsed.host_str().unwrap_or("")
        ));
    }
    Ok(())
}

string_type! {
    /// A URL on the node itself for a health probe: `http://` and a loopback host
    /// (`127.0.0.0/8`, `[::1]`, `localhost`), with any port and path.
    LocalHttpUrl,
    kind: "URL on the node",
    check: check_local_http_url,
    schema: string_schema(
        "http:// URL on a loopback address of the node.",
        Some(&format!(
            r"^http://(?:localhost|127\.{o}\.{o}\.{o}|\[::1\])(?::{port})?(?:/[A-Za-z0-9._~/-]*)?$",
            o = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
            port = port_pattern()
        )),
        Some(16),
        Some(URL_MAX_CHARS),
        "http://127.0.0.1:8080/healthz",
    ),
}

/// The two words [`PauseUntil`] takes besides a time (their home is `constants`, which the
/// apiclient that writes them shares).
const PAUSE_NONE: &str = constants::UPDATES_PAUSE_NONE;
const PAUSE_INDEFINITE: &str = constants::UPDATES_PAUSE_INDEFINITE;

fn check_pause_until(input: &str) -> Result<(), String> {
    no_control(input)?;
    if input == PAUSE_NONE || input == PAUSE_INDEFINITE {
        return Ok(());
    }
    jiff::Timestamp::from_str(input).map(|_| ()).map_err(|e| {
        format!(
            "expected '{PAUSE_NONE}', '{PAUSE_INDEFINITE}' or an RFC 3339 time such as \
             2025-03-01T10:00:00Z ({e})"
        )
    })
}

string_type! {
    /// How long the update daemon is paused (`settings.updates.pause-until`): `none` (not
    /// paused), `indefinite` (until resumed), or an RFC 3339 time after which it carries on.
    /// `apiclient update pause [--for D]` and `apiclient update resume` set it.
    PauseUntil,
    kind: "pause",
    check: check_pause_until,
    schema: string_schema(
        "'none', 'indefinite', or an RFC 3339 time such as 2025-03-01T10:00:00Z.",
        Some(&pause_until_pattern()),
        Some(4),
        Some(64),
        "none",
    ),
}

impl PauseUntil {
    /// Not paused.
    pub const NONE: &'static str = PAUSE_NONE;
    /// Paused until resumed.
    pub const INDEFINITE: &'static str = PAUSE_INDEFINITE;

    /// Paused until this time (`Some(Some(t))`), until resumed (`Some(None)`), or not at all
    /// (`None`).
    pub fn paused(&self) -> Option<Option<jiff::Timestamp>> {
        match self.inner.as_str() {
            PAUSE_NONE => None,
            PAUSE_INDEFINITE => Some(None),
            text => Some(jiff::Timestamp::from_str(text).ok()),
        }
    }

    /// The value for a pause ending at `until`.
    pub fn until(until: jiff::Timestamp) -> PauseUntil {
        PauseUntil {
            inner: until.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host firewall

enum_type! {
    /// Transport protocol of an inbound firewall rule.
    FirewallProtocol,
    kind: "firewall protocol",
    description: "Transport protocol of an inbound firewall rule: tcp or udp.",
    {
        /// TCP.
        Tcp => "tcp",
        /// UDP.
        Udp => "udp",
    }
}

/// Checks `address` or `address/prefix` with the prefix within the family's width and no bits
/// set past it (so `10.0.0.1/8` is refused rather than silently widened or narrowed).
fn check_ip_cidr(input: &str) -> Result<(), String> {
    no_control(input)?;
    let (address, prefix) = match input.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (input, None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        "expected an IPv4 or IPv6 address with an optional /prefix, such as 10.0.0.0/8 or fd00::/8"
            .to_string()
    })?;
    let width: u8 = if address.is_ipv4() { 32 } else { 128 };
    let Some(prefix) = prefix else {
        return Ok(());
    };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= width && !prefix.starts_with('+'))
        .ok_or_else(|| format!("the prefix must be a number from 0 to {width}"))?;
    let bits = match address {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    };
    // The bits past the prefix; an IPv4 address sits in the top 32 bits, so one mask fits both.
    let past_prefix = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    if bits & past_prefix != 0 {
        let network = bits & !past_prefix;
        let network = match address {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(
                u32::try_from(network >> 96).expect("an IPv4 address fills the top 32 bits only"),
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network)),
        };
        return Err(format!(
            "bits are set past the /{prefix} prefix; the network is {network}/{prefix}"
        ));
    }
    Ok(())
}

string_type! {
    /// An IPv4 or IPv6 address, or a network in CIDR form (`10.0.0.0/8`, `fd00::/8`): the
    /// sources a firewall rule admits.
    IpCidr,
    kind: "IP address or network",
    check: check_ip_cidr,
    schema: string_schema(
        "IPv4 or IPv6 address or network in CIDR form, with no bits set past the prefix.",
        Some(&*format!(
            "^(?:{}(?:/(?:3[0-2]|[12]?[0-9]))?|{}(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$",
            ipv4_pattern(),
            ipv6_pattern()
        )),
        Some(1),
        None,
        "10.0.0.0/8",
    ),
}

impl IpCidr {
    /// Whether the address is IPv4 (the firewall writes IPv4 and IPv6 sources to different
    /// matches).
    pub fn is_ipv4(&self) -> bool {
        !self.inner.contains(':')
    }
}

/// A port (`22`) or an inclusive range of ports (`"8000-8100"`), each from 1 to 65535.
/// Written as a number for one port and as a string for a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The kind of value, as named in error messages.
    pub const KIND: &'static str = "port or port range";

    /// The lowest port of the range.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The highest port of the range (equal to [`Self::first`] for one port).
    pub fn last(&self) -> u16 {
        self.last
    }

    fn port(text: &str) -> Result<u16, String> {
        text.parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && !text.starts_with('+') && !text.starts_with('0'))
            .ok_or_else(|| {
                format!(
                    "'{}' is not a port from 1 to 65535",
                    crate::error::printable(text)
                )
            })
    }
}

impl TryFrom<&str> for PortRange {
    type Error = InvalidValue;

    fn try_from(input: &str) -> Result<Self, InvalidValue> {
        let parse = || -> Result<PortRange, String> {
            no_control(input)?;
            let (first, last) = match input.split_once('-') {
                Some((first, last)) => (Self::port(first)?, Self::port(last)?),
                None => {
                    let port = Self::port(input)?;
                    (port, port)
                }
            };
            if first > last {
                return Err(format!("the range runs backwards; write {last}-{first}"));
            }
            Ok(PortRange { first, last })
        };
        parse().map_err(|reason| InvalidValue::new(input, Self::KIND, reason))
    }
}

impl FromStr for PortRange {
    type Err = InvalidValue;

    fn from_str(input: &str) -> Result<Self, InvalidValue> {
        Self::try_from(input)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = PortRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a port number or a \"first-last\" range string")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PortRange, E> {
                PortRange::try_from(value.to_string().as_str()).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PortRange, E> {
                PortRange::try_from(value.to_string().as_str()).map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<PortRange, E> {
                PortRange::try_from(value).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for PortRange {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535));
        let range = string_schema(
            "Inclusive range of ports, first-last.",
            Some("^[1-9][0-9]{0,4}-[1-9][0-9]{0,4}$"),
            Some(3),
            Some(11),
            "8000-8100",
        );
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(number)
            .item(range)
            .description(Some(
                "A port from 1 to 65535 (a number) or an inclusive range of ports (a \"first-last\" string).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PortRange {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that every input in `good` is accepted and round-trips through serde, and that
    /// every input in `bad` is refused with an error naming the type.
    fn check<T>(good: &[&str], bad: &[&str])
    where
        T: for<'a> TryFrom<&'a str, Error = InvalidValue>
            + Serialize
            + for<'de> Deserialize<'de>
            + fmt::Display
            + fmt::Debug
            + PartialEq,
    {
        for input in good {
            let value = T::try_from(input)
                .unwrap_or_else(|e| panic!("{input:?} should be accepted, got: {e}"));
            assert_eq!(value.to_string(), *input);
            let json = serde_json::to_value(&value).unwrap();
            assert_eq!(json, serde_json::Value::String(input.to_string()));
            let back: T = serde_json::from_value(json).unwrap();
            assert_eq!(back, value);
        }
        for input in bad {
            let err = T::try_from(input)
                .err()
                .unwrap_or_else(|| panic!("{input:?} should be refused"));
            let message = err.to_string();
            assert!(
                message.contains("is not a valid"),
                "unexpected message {message}"
            );
            let from_json: Result<T, _> =
                serde_json::from_value(serde_json::Value::String(input.to_string()));
            assert!(from_json.is_err(), "{input:?} should fail deserialization");
        }
    }

    const CONTROL_CHARS: &[&str] = &["a\u{0}b", "a\u{1b}b", "a\u{7f}b", "a\u{85}b", "a\u{9f}b"];

    #[test]
    fn single_line_string() {
        check::<SingleLineString>(&["", "hello world", "Ünïcödé ✓", "a\u{a0}b"], CONTROL_CHARS);
        check::<SingleLineString>(
            &[],
            &[
                "a\nb",
                "a\rb",
                "a\u{b}b",
                "a\u{c}b",
                "a\u{2028}b",
                "a\u{2029}b",
                "tab\there",
            ],
        );
        let err = SingleLineString::try_from("one\ntwo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'one\\ntwo' is not a valid single-line string: contains a line break (U+000A); it must be a single line"
        );
    }

    #[test]
    fn valid_base64() {
        check::<ValidBase64>(&["", "aGVsbG8=", "aGVsbG8K", "+/+/"], CONTROL_CHARS);
        check::<ValidBase64>(&[], &["aGVsbG8", "not base64!", "aGVs bG8=", "aGVsbG8=\n"]);
        assert_eq!(
            ValidBase64::try_from("aGVsbG8=").unwrap().decode(),
            b"hello"
        );
    }

    #[test]
    fn hostname() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let max = format!("{long_label}.{long_label}.{long_label}.{}", "a".repeat(61));
        assert_eq!(max.len(), 253);
        let too_long = format!("{max}a");
        check::<ValidLinuxHostname>(
            &[
                "localhost",
                "node-1",
                "ip-10-0-0-1.ec2.internal",
                "1",
                &long_label,
                &max,
            ],
            &[
                "",
                "Bad_Host",
                "UPPER",
                "under_score",
                "trailing.",
                ".leading",
                "dou..ble",
                "-dash",
                "dash-",
                "a.-b",
                "sp ace",
                &too_long_label,
                &too_long,
                "a\u{0}b",
            ],
        );
        let err = ValidLinuxHostname::try_from("Bad_Host").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("'Bad_Host' is not a valid hostname: contains 'B'"));
    }

    #[test]
    fn journal_remote_url() {
        check::<JournalRemoteUrl>(
            &[
                "http://logs.example.com",
                "http://logs.example.com:19532",
                "http://10.0.2.102:19532",
                "http://127.0.0.1",
                "http://[fd00::1]:19532",
                "http://localhost:8080",
            ],
            &[
                "",
                "logs.example.com",
                "logs.example.com:19532",
                "ftp://logs.example.com",
                "https://logs.example.com:19532",
                "HTTP://logs.example.com",
                "http://logs.example.com/",
                "http://logs.example.com:19532/upload",
                "http://logs.example.com?x=1",
                "http://logs.example.com#f",
                "http://user:pw@logs.example.com",
                "http://",
                "http://:19532",
                "http://logs.example.com:0",
                "http://logs.example.com:65536",
                "http://logs example.com",
                "http://fd00::1",
                "http://[fd00::1]",
                "http://[nope]:1",
                "http://bad_host:1",
                "http://a\u{0}b",
            ],
        );
        let reason = |input: &str| JournalRemoteUrl::try_from(input).unwrap_err().to_string();
        assert!(reason("http://h:1/upload").contains("adds /upload itself"));
        assert!(reason("http://[fd00::1]").contains("[fd00::1]:19532"));
        assert!(reason("logs.example.com").contains("has no scheme"));
        assert!(reason("ftp://x").contains("scheme 'ftp'"));
        assert!(reason("https://x").contains("client certificate"));
    }

    #[test]
    fn url() {
        check::<Url>(
            &[
                "https://example.com",
                "http://proxy.internal:3128",
                "http://user:secret@proxy:3128/",
                "https://updates.ballast.invalid/metadata/",
                "HTTPS://Example.COM/Path?q=1",
                "http://10.0.0.1:8080",
                "http://[fd00::1]:8080/",
                "pool.ntp.org",
                "time.example.com:123",
                "localhost",
                "10.0.0.1",
                "10.0.0.1:3128",
                "fd00::1",
                "[fd00::1]",
                "[fd00::1]:123",
            ],
            &[
                "",
                "ftp://example.com",
                "file:///etc/passwd",
                "https://",
                "http://exa mple.com",
                " https://example.com",
                "https://example.com\n",
                "pool.ntp.org/path",
                "mailto:root@example.com",
                "host:",
                "host:0",
                "host:65536",
                "host:12ab",
                "fd00::1:123:",
                "[fd00::1",
                "[not-v6]:123",
                "[fd00::1]x",
                "999.1.1.1",
                "under_score.example.com",
                "-bad.example.com",
                "a..b",
                "a\u{0}b",
            ],
        );
        assert!(Url::try_from("pool.ntp.org").unwrap().is_bare_host());
        assert!(!Url::try_from("https://x.example").unwrap().is_bare_host());
        let err = Url::try_from("ftp://example.com").unwrap_err();
        assert!(err.to_string().contains("scheme 'ftp' is not supported"));
        let err = Url::try_from("socks5://user:hunter2@proxy:1080/x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("'socks5://***@proxy:1080/x' is not a valid URL"),
            "{err}"
        );
    }

    #[test]
    fn dns_domain() {
        check::<DnsDomain>(
            &[
                "example.com",
                "Corp.Example.COM",
                "example.com.",
                "local",
                "a-b.c",
            ],
            &[
                "", ".", "a..b", ".a", "-a.com", "a-.com", "a_b.com", "a b", "a\u{0}",
            ],
        );
    }

    #[test]
    fn sysctl_key() {
        let long = "a".repeat(256);
        check::<SysctlKey>(
            &[
                "net.ipv4.ip_forward",
                "kernel.pid_max",
                "net/ipv4/conf/eth0.100/rp_filter",
                "net.ipv6.conf.all.disable_ipv6",
                "vm.max_map_count",
                "net.ipv4.conf.br-1.forwarding",
            ],
            &[
                "",
                "-net.ipv4.ip_forward",
                ".net",
                "net.",
                "net..ipv4",
                "net//ipv4",
                "net.ipv4.conf.*.rp_filter",
                "net ipv4",
                "net=1",
                &long,
                "a\u{0}",
            ],
        );
    }

    #[test]
    fn kmod_key() {
        let max = "m".repeat(64);
        let long = "m".repeat(65);
        check::<KmodKey>(
            &["nf_conntrack", "dm-verity", "ext4", &max],
            &["", "-x", "a.b", "a/b", "a b", &long, "a\u{0}"],
        );
    }

    #[test]
    fn identifier() {
        let max = "i".repeat(76);
        let long = "i".repeat(77);
        check::<Identifier>(
            &["admin", "control", "my-container-1", "A1", &max],
            &[
                "",
                "-admin",
                "under_score",
                "a.b",
                "a b",
                "naïve",
                &long,
                "a\u{0}",
            ],
        );
    }

    #[test]
    fn friendly_version() {
        check::<FriendlyVersion>(
            &[
                "latest",
                "1.2.3",
                "v1.2.3",
                "0.0.0",
                "10.20.30",
                "1.0.0-rc.1",
                "v1.0.0+build.5",
            ],
            &[
                "",
                "Latest",
                "1.2",
                "1.2.3.4",
                "01.2.3",
                "v",
                "vv1.2.3",
                "1.2.x",
                "1.2.3-",
                "1.2.3+",
                "1.2.3-rc..1",
                " 1.2.3",
                "1.2.3\u{0}",
            ],
        );
        let v = FriendlyVersion::try_from("v1.2.3").unwrap();
        assert_eq!(v.version_number(), Some("1.2.3"));
        assert!(!v.is_latest());
        assert!(FriendlyVersion::try_from("latest").unwrap().is_latest());
    }

    #[test]
    fn timezone() {
        let long = format!("A/{}", "b".repeat(63));
        check::<Timezone>(
            &[
                "UTC",
                "Etc/UTC",
                "America/New_York",
                "America/Argentina/Buenos_Aires",
                "Etc/GMT+5",
                "Etc/GMT-14",
                "America/Port-au-Prince",
            ],
            &[
                "",
                "/etc/localtime",
                "../../etc/passwd",
                "Europe/..",
                "Europe/",
                "Europe//Paris",
                "Europe/Paris Time",
                "Europe\\Paris",
                &long,
                "UTC\u{0}",
            ],
        );
    }

    #[test]
    fn boot_config() {
        check::<BootConfigKey>(
            &[
                "console",
                "systemd.log_level",
                "rd.luks.uuid",
                "8250.nr_uarts",
                "no_timer_check",
            ],
            &["", ".a", "a.", "a..b", "a=b", "a b", "a\"b", "a\u{0}"],
        );
        check::<BootConfigValue>(
            &["", "tty0", "ttyS0,115200", "debug", "/dev/vda", "a=b"],
            &[
                "a b",
                "\"quoted\"",
                "it's",
                "a\tb",
                "a\u{0}b",
                &"v".repeat(1025),
            ],
        );
    }

    #[test]
    fn pem_certificate() {
        use base64::engine::general_purpose::STANDARD;
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let good = STANDARD.encode(pem);
        let key = STANDARD.encode("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
        let unterminated = STANDARD.encode("-----BEGIN CERTIFICATE-----\nMIIB\n");
        let binary = STANDARD.encode([0xff_u8, 0xfe, 0x00]);
        check::<PemCertificateString>(
            &[&good],
            &["", &key, &unterminated, &binary, "not base64!", pem],
        );
        assert_eq!(
            PemCertificateString::try_from(good.as_str()).unwrap().pem(),
            pem
        );
    }

    #[test]
    fn image_reference() {
        let long = format!("registry.example.com/{}", "a".repeat(240));
        check::<ImageReference>(
            &[
                "registry.example.com/ballast-admin:v0.1.0",
                "busybox",
                "example.com/app@sha256:0123456789abcdef",
            ],
            &["", "-rm", "a b", "a\nb", "a\u{0}b", &long],
        );
    }

    #[test]
    fn enums() {
        check::<Lockdown>(
            &["none", "integrity", "confidentiality"],
            &["", "None", "full", "integrity "],
        );
        check::<BootstrapContainerMode>(&["off", "once", "always"], &["", "Once", "never"]);
        assert_eq!(
            Lockdown::try_from("integrity").unwrap(),
            Lockdown::Integrity
        );
        let err = Lockdown::try_from("full").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'full' is not a valid lockdown mode: expected one of none, integrity, confidentiality"
        );
        assert_eq!(Lockdown::ALL.len(), 3);
    }

    #[test]
    fn long_input_is_shortened_in_messages() {
        let input = format!("{}!", "A".repeat(5000));
        let message = ValidBase64::try_from(input.as_str())
            .unwrap_err()
            .to_string();
        assert!(message.len() < 300, "message too long: {message}");
        assert!(message.contains("5001 characters in all"));
    }

    #[test]
    fn wrong_json_type_names_the_expected_kind() {
        let err = serde_json::from_value::<ValidLinuxHostname>(serde_json::json!(5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type: integer `5`, expected a string (hostname)"
        );
    }

    #[test]
    fn borrow_allows_str_lookups() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(SysctlKey::try_from("net.ipv4.ip_forward").unwrap(), 1);
        assert_eq!(map.get("net.ipv4.ip_forward"), Some(&1));
    }

    #[test]
    fn schemas_are_strings() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(ValidLinuxHostname::schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(
            schema["pattern"],
            "^[0-9a-z](?:[0-9a-z-]{0,61}[0-9a-z])?(?:\\.[0-9a-z](?:[0-9a-z-]{0,61}[0-9a-z])?)*$"
        );
        assert_eq!(schema["maxLength"], 253);
        let schema = serde_json::to_value(Lockdown::schema()).unwrap();
        assert_eq!(
            schema["enum"],
            serde_json::json!(["none", "integrity", "confidentiality"])
        );
    }

    /// The longest map keys the types allow, in their worst form (a separator at every other
    /// character), are stored by the model under every parent they are used in; one more
    /// character is refused by the type itself, not later by the datastore.
    #[test]
    fn longest_map_keys_are_storable() {
        // A separator at every other character, but never last.
        let worst = |n: usize| -> String {
            (0..n)
                .map(|i| if i % 2 == 1 && i + 1 < n { '.' } else { 'a' })
                .collect()
        };
        let fits = |doc: serde_json::Value| crate::parse_settings(&doc).map(|_| ());
        let n = MAX_SYSCTL_KEY_LEN;
        assert!(SYSCTL_PARENT.starts_with("settings."));
        fits(serde_json::json!({"kernel": {"sysctl": {worst(n): "1"}}})).unwrap();
        assert!(SysctlKey::try_from(worst(n + 1)).is_err());
        let n = MAX_BOOT_CONFIG_KEY_LEN;
        for group in ["kernel-parameters", "init-parameters"] {
            assert!(format!("settings.boot.{group}").len() <= BOOT_PARAMETERS_PARENT.len());
            fits(serde_json::json!({"boot": {group: {worst(n): ["x"]}}})).unwrap();
        }
        assert!(BootConfigKey::try_from(worst(n + 1)).is_err());
    }

    #[test]
    fn firewall_sources_are_addresses_or_networks_without_host_bits() {
        check::<IpCidr>(
            &[
                "10.0.0.0/8",
                "192.168.1.7",
                "0.0.0.0/0",
                "fd00::/8",
                "::1",
                "2001:db8::1/128",
            ],
            &[
                "10.0.0.1/8",
                "10.0.0.0/33",
                "fd00::1/8",
                "fd00::/129",
                "host",
                "10.0.0.0/",
                "10.0.0.0/+8",
                "10.0.0.0/8\n",
            ],
        );
        let err = IpCidr::try_from("10.1.2.3/16").unwrap_err().to_string();
        assert!(err.contains("10.1.0.0/16"), "{err}");
        assert!(IpCidr::try_from("10.0.0.0/8").unwrap().is_ipv4());
        assert!(!IpCidr::try_from("fd00::/8").unwrap().is_ipv4());
    }

    #[test]
    fn ports_are_numbers_and_ranges_are_strings() {
        let one: PortRange = serde_json::from_value(serde_json::json!(22)).unwrap();
        assert_eq!((one.first(), one.last()), (22, 22));
        assert_eq!(serde_json::to_value(one).unwrap(), serde_json::json!(22));
        let range: PortRange = serde_json::from_value(serde_json::json!("8000-8100")).unwrap();
        assert_eq!(
            serde_json::to_value(range).unwrap(),
            serde_json::json!("8000-8100")
        );
        assert_eq!(range.to_string(), "8000-8100");
        for bad in [
            serde_json::json!(0),
            serde_json::json!(65536),
            serde_json::json!(-1),
            serde_json::json!("9-8"),
            serde_json::json!("1-"),
            serde_json::json!("080"),
            serde_json::json!(22.5),
            serde_json::json!("22,23"),
        ] {
            let err = serde_json::from_value::<PortRange>(bad.clone()).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
        let err = PortRange::try_from("9-8").unwrap_err().to_string();
        assert!(err.contains("write 8-9"), "{err}");
    }
}
