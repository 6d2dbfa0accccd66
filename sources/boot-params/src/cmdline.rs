//! Splitting the text of `/proc/cmdline` into parameters, the way the kernel does.

/// A kernel command line split into `key` / `key=value` parameters, in order.
///
/// The kernel separates parameters at whitespace outside double quotes and removes the quotes,
/// so `ballast.init="/usr/lib/systemd/systemd"` and the unquoted form are the same parameter.
/// The first `=` separates the key from the value (`k=a=b` is `k` = `a=b`). When a key is
/// repeated, the last occurrence wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    /// Splits `text`, typically the contents of `/proc/cmdline` (a trailing newline is fine).
    pub fn parse(text: &str) -> Cmdline {
        let mut words = Vec::new();
        let mut current = String::new();
        let mut in_word = false;
        let mut in_quotes = false;
        for c in text.chars() {
            match c {
                '"' => {
                    in_quotes = !in_quotes;
                    in_word = true;
                }
                c if c.is_whitespace() && !in_quotes => {
                    if in_word {
                        words.push(std::mem::take(&mut current));
                        in_word = false;
                    }
                }
                c => {
                    current.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            words.push(current);
        }
        let params = words
            .into_iter()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => (key.to_string(), Some(value.to_string())),
                None => (word, None),
            })
            .collect();
        Cmdline { params }
    }

    /// Every parameter in command line order: the key, and the value when there is an `=`.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The value of the last parameter named `key`; `Some("")` for a bare `key` or `key=`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, Option<String>)> {
        Cmdline::parse(text).params().to_vec()
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            pairs("  a=1 \"b=two words\" c=\"x y\" flag\n"),
            vec![
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), Some("two words".to_string())),
                ("c".to_string(), Some("x y".to_string())),
                ("flag".to_string(), None),
            ]
        );
        assert_eq!(
            pairs("k=a=b"),
            vec![("k".to_string(), Some("a=b".to_string()))]
        );
        assert!(pairs(" \n").is_empty());
    }

    #[test]
    fn last_occurrence_wins() {
        let cmdline = Cmdline::parse("ballast.imds=http://a quiet ballast.imds=off x=");
        assert_eq!(cmdline.get("ballast.imds"), Some("off"));
        assert_eq!(cmdline.get("quiet"), Some(""));
        assert_eq!(cmdline.get("x"), Some(""));
        assert_eq!(cmdline.get("missing"), None);
        assert_eq!(Cmdline::parse("").get("ballast.imds"), None);
    }
}
