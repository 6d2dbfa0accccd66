//! The boot deadline: a new image that does not mark itself successful in time is reset.
//!
//! GRUB gives a new set one try and spends it before booting (see the crate docs). A boot that
//! hangs or stops half way (a failing unit, a failed migration) would stay where it is until
//! somebody resets the node; this watch does the reset, so the previous set boots without a
//! human. It starts early in every boot and:
//!
//! * exits at once when the running set is already marked successful (every boot of a set that
//!   came up once: a later failure of some service is not a reason to change the OS);
//! * otherwise checks the bit every few seconds and exits as soon as `mark-successful-boot`
//!   set it;
//! * otherwise, once the deadline (seconds since the kernel started) has passed, reports
//!   [`Outcome::Expired`]; the binary then prints why on the console and reboots.
//!
//! The deadline comes from `ballast.boot-deadline=SECONDS` on the kernel command line
//! ([`from_cmdline`]); `0` turns the watch off; the default is [`DEFAULT_DEADLINE`].

use crate::{Result, Signpost};
use std::time::Duration;

/// The deadline when the command line names none: generous for a node on real hardware or
/// KVM, which reaches configured.target in seconds.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// Kernel command line parameter that sets the deadline in seconds (`0`: no deadline).
pub const CMDLINE_PARAM: &str = boot_params::BOOT_DEADLINE;

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The running set had succeeded before this boot: nothing to watch.
    AlreadySuccessful,
    /// This boot was marked successful before the deadline.
    MarkedSuccessful,
    /// The command line turned the watch off.
    Disabled,
    /// The deadline passed and the running set is still not marked successful.
    Expired,
}

/// The deadline from `ballast.boot-deadline=` in `cmdline`: `Ok(None)` when it is `0`, the
/// default when the parameter is absent, and an error text for a value that is not a number
/// of seconds (the caller then uses the default, so a typo never disables the watch).
pub fn from_cmdline(cmdline: &str) -> std::result::Result<Option<Duration>, String> {
    match boot_params::Cmdline::parse(cmdline).get(CMDLINE_PARAM) {
        None => Ok(Some(DEFAULT_DEADLINE)),
        Some(value) => match value.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(seconds) => Ok(Some(Duration::from_secs(seconds))),
            Err(_) => Err(format!(
                "{CMDLINE_PARAM}={value} is not a number of seconds; using the default of {} s",
                DEFAULT_DEADLINE.as_secs()
            )),
        },
    }
}

/// Watches the running set of `signpost` until it is marked successful or `uptime()` reaches
/// `deadline`, checking every `poll`. `sleep` waits (a parameter so tests need not).
pub fn watch(
    signpost: &Signpost,
    deadline: Option<Duration>,
    poll: Duration,
    mut uptime: impl FnMut() -> Duration,
    mut sleep: impl FnMut(Duration),
) -> Result<Outcome> {
    if running_set_successful(signpost)? {
        return Ok(Outcome::AlreadySuccessful);
    }
    let Some(deadline) = deadline else {
        return Ok(Outcome::Disabled);
    };
    tracing::info!(
        "set {} has not booted successfully before; it must be marked successful within {} s of boot",
        signpost.active(),
        deadline.as_secs()
    );
    loop {
        let now = uptime();
        if now >= deadline {
            // One last look: mark-successful-boot may have run just now.
            if running_set_successful(signpost)? {
                return Ok(Outcome::MarkedSuccessful);
            }
            return Ok(Outcome::Expired);
        }
        sleep(poll.min(deadline - now));
        if running_set_successful(signpost)? {
            return Ok(Outcome::MarkedSuccessful);
        }
    }
}

fn running_set_successful(signpost: &Signpost) -> Result<bool> {
    let status = signpost.status()?;
    Ok(status.set(signpost.active()).successful)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_parameter() {
        assert_eq!(from_cmdline("console=ttyS0"), Ok(Some(DEFAULT_DEADLINE)));
        assert_eq!(
            from_cmdline("ballast.boot-deadline=90 quiet"),
            Ok(Some(Duration::from_secs(90)))
        );
        assert_eq!(from_cmdline("ballast.boot-deadline=0"), Ok(None));
        // The last one wins, as for the kernel's own parameters.
        assert_eq!(
            from_cmdline("ballast.boot-deadline=10 ballast.boot-deadline=20"),
            Ok(Some(Duration::from_secs(20)))
        );
        // Quotes are removed, as the kernel does.
        assert_eq!(
            from_cmdline("quiet \"ballast.boot-deadline=30\"\n"),
            Ok(Some(Duration::from_secs(30)))
        );
        let err = from_cmdline("ballast.boot-deadline=soon").unwrap_err();
        assert!(err.contains("not a number of seconds"), "{err}");
    }
}
