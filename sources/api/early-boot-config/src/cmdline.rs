//! The kernel command line: `name=value` parameters as the kernel splits them.

/// Parameter holding base64 user data (TOML, optionally gzip-compressed before encoding).
pub const USER_DATA_PARAM: &str = "ballast.user-data";
/// Parameter naming the instance-metadata base URL, or `off`.
pub const IMDS_PARAM: &str = "ballast.imds";

/// A parsed kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    params: Vec<(String, Option<String>)>,
}

impl KernelCmdline {
    /// Splits the text of `/proc/cmdline`: parameters are separated by whitespace, and double
    /// quotes group text that holds spaces (`a="b c"` is `a` = `b c`; the quotes are dropped).
    pub fn parse(text: &str) -> KernelCmdline {
        let mut params = Vec::new();
        let mut current = String::new();
        let mut in_quotes = false;
        let mut started = false;
        for c in text.chars() {
            match c {
                '"' => {
                    in_quotes = !in_quotes;
                    started = true;
                }
                c if c.is_whitespace() && !in_quotes => {
                    if started {
                        params.push(split_param(&current));
                        current.clear();
                        started = false;
                    }
                }
                c => {
                    current.push(c);
                    started = true;
                }
            }
        }
        if started {
            params.push(split_param(&current));
        }
        KernelCmdline { params }
    }

    /// The value of the last `name=value` parameter, as the kernel lets later ones win.
    /// `Some("")` for `name=` or a bare `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

fn split_param(param: &str) -> (String, Option<String>) {
    match param.split_once('=') {
        Some((name, value)) => (name.to_string(), Some(value.to_string())),
        None => (param.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_on_whitespace_and_quotes() {
        let cmdline = KernelCmdline::parse(
            "console=ttyS0 quiet ballast.user-data=W3NldHRpbmdzXQ== x=\"a b\" -- systemd.x=1\n",
        );
        assert_eq!(cmdline.get("console"), Some("ttyS0"));
        assert_eq!(cmdline.get("quiet"), Some(""));
        assert_eq!(cmdline.get(USER_DATA_PARAM), Some("W3NldHRpbmdzXQ=="));
        assert_eq!(cmdline.get("x"), Some("a b"));
        assert_eq!(cmdline.get("systemd.x"), Some("1"));
        assert_eq!(cmdline.get("missing"), None);
    }

    #[test]
    fn later_parameters_win() {
        let cmdline = KernelCmdline::parse("ballast.imds=http://a ballast.imds=off");
        assert_eq!(cmdline.get(IMDS_PARAM), Some("off"));
        assert_eq!(KernelCmdline::parse("").get(IMDS_PARAM), None);
    }
}
