//! The rules that move the update status document (`GET /updates/status`) from one state to the
//! next. The document itself is declared once, in `api_types::update`, for the server and its
//! clients; it is re-exported here. Nothing here runs a process or touches a file, so every
//! transition can be tested on its own; [`super::Updates`] runs the updater and feeds the
//! results in.
//!
//! States and transitions follow Bottlerocket's thar-be-updates:
//!
//! ```text
//!   refresh (always allowed; moves Idle/Available only)
//!   Idle <-> Available --prepare--> Staged --activate--> Ready
//!                ^                    ^ |                  |
//!                +--prepare failed----+ +<---deactivate----+
//! ```

pub use api_types::update::{
    CommandRecord, CommandStatus, CommandType, FailedUpdate, PartitionInfo, UpdateImage,
    UpdateProgress, UpdateState, UpdateStatus,
};

/// What the updater's `status` reports about the partition sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    pub active: PartitionInfo,
    /// The inactive set, when it holds a complete image.
    pub staging: Option<PartitionInfo>,
    pub failed_update: Option<FailedUpdate>,
}

/// Why an action cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another action is running (423).
    Busy(String),
    /// The current state does not allow it (409).
    NotAllowed(String),
}

/// What the updater answered to a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub available: Vec<String>,
    pub chosen: Option<UpdateImage>,
}

/// How a finished action went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    pub exit_status: Option<i32>,
    pub stderr: String,
    /// Set for a successful refresh.
    pub refresh: Option<Refreshed>,
}

/// What an action interrupted by a restart of the API server says about itself.
pub const INTERRUPTED: &str = "the API server stopped while this action ran, and the updater \
    was stopped with it; its outcome is unknown. Check the state below and run the action again";

/// The status of a node whose update history this server does not know (first start since
/// boot): Ready when an update is already set to boot next, else Idle.
pub fn initial(partitions: Partitions) -> UpdateStatus {
    let mut status = UpdateStatus {
        update_state: UpdateState::Idle,
        available_updates: Vec::new(),
        chosen_update: None,
        active_partition: partitions.active.clone(),
        staging_partition: None,
        most_recent_command: None,
        progress: None,
        failed_update: None,
        daemon: None,
    };
    status.set_partitions(partitions);
    status
}

fn staged_version_text(status: &UpdateStatus) -> String {
    status
        .staging_partition
        .as_ref()
        .map(|p| format!(" {}", p.image.version))
        .unwrap_or_default()
}

/// The rules that move the status document from one state to the next. The document itself is
/// declared in the `api-types` crate (the contract with apiclient); its transitions are the
/// server's business and live here.
pub trait Transitions {
    /// Whether `cmd` may start now; the refusal says why not and what to do instead.
    fn check(&self, cmd: CommandType) -> Result<(), Refusal>;
    /// Records that `cmd` started at `timestamp` (RFC 3339).
    fn begin(&mut self, cmd: CommandType, timestamp: String);
    /// Records how the running action ended and moves to the state that follows.
    fn end(&mut self, outcome: Outcome);
    /// An action marked Running in a status saved by an earlier server process was cut short
    /// with it: mark it failed and pick the state the partitions support. Call after
    /// [`Transitions::set_partitions`] with fresh partition facts when possible.
    fn recover_interrupted(&mut self) -> bool;
    /// Takes in fresh facts about the partition sets and keeps the state consistent with them
    /// when the updater was driven by hand: Ready exactly when the staged image boots next.
    fn set_partitions(&mut self, partitions: Partitions);
}

impl Transitions for UpdateStatus {
    fn check(&self, cmd: CommandType) -> Result<(), Refusal> {
        if let Some(running) = self.running() {
            return Err(Refusal::Busy(format!(
                "the update action '{}' started at {} is still running; wait until \
                 GET /updates/status shows it finished, then try again",
                running.cmd_type, running.timestamp
            )));
        }
        let state = self.update_state;
        let refuse = |what: String| Err(Refusal::NotAllowed(what));
        match (cmd, state) {
            (CommandType::Refresh, _) => Ok(()),
            (CommandType::Prepare, UpdateState::Available | UpdateState::Staged)
                if self.chosen_update.is_some() =>
            {
                Ok(())
            }
            (
                CommandType::Prepare,
                UpdateState::Idle | UpdateState::Available | UpdateState::Staged,
            ) => refuse(format!(
                "cannot prepare an update: the update state is {state} and no update is \
                     chosen. Check for updates first with POST /actions/refresh-updates \
                     (apiclient update check)"
            )),
            (CommandType::Prepare, UpdateState::Ready) => refuse(format!(
                "cannot prepare an update: the update state is Ready, the staged update{} \
                 boots next. Reboot to use it (POST /actions/reboot), or deactivate it first \
                 (POST /actions/deactivate-update, apiclient update cancel)",
                staged_version_text(self)
            )),
            (CommandType::Activate, UpdateState::Staged) => Ok(()),
            (CommandType::Activate, UpdateState::Ready) => refuse(format!(
                "the update{} is already activated (update state Ready); reboot to use it \
                 (POST /actions/reboot)",
                staged_version_text(self)
            )),
            (CommandType::Activate, _) => refuse(format!(
                "cannot activate an update: the update state is {state} and no update is \
                 staged. Prepare one first with POST /actions/prepare-update (apiclient update \
                 apply)"
            )),
            (CommandType::Deactivate, UpdateState::Ready) => Ok(()),
            (CommandType::Deactivate, _) => refuse(format!(
                "cannot deactivate: the update state is {state} and no update is activated, so \
                 the node already boots its current image next"
            )),
        }
    }

    fn begin(&mut self, cmd: CommandType, timestamp: String) {
        self.most_recent_command = Some(CommandRecord {
            cmd_type: cmd,
            cmd_status: CommandStatus::Running,
            timestamp,
            exit_status: None,
            stderr: String::new(),
        });
        self.progress = None;
    }

    fn end(&mut self, outcome: Outcome) {
        let Some(record) = self.most_recent_command.as_mut() else {
            return;
        };
        let cmd = record.cmd_type;
        record.cmd_status = if outcome.success {
            CommandStatus::Success
        } else {
            CommandStatus::Failed
        };
        record.exit_status = outcome.exit_status;
        record.stderr = outcome.stderr;
        self.progress = None;
        self.update_state = match (cmd, outcome.success) {
            (CommandType::Refresh, true) => {
                let refreshed = outcome.refresh.unwrap_or(Refreshed {
                    available: Vec::new(),
                    chosen: None,
                });
                self.available_updates = refreshed.available;
                self.chosen_update = refreshed.chosen;
                match self.update_state {
                    UpdateState::Idle | UpdateState::Available if self.chosen_update.is_some() => {
                        UpdateState::Available
                    }
                    UpdateState::Idle | UpdateState::Available => UpdateState::Idle,
                    other => other,
                }
            }
            (CommandType::Prepare, true) => UpdateState::Staged,
            // The inactive set may be half written: nothing is staged any more.
            (CommandType::Prepare, false) => UpdateState::Available,
            (CommandType::Activate, true) => UpdateState::Ready,
            (CommandType::Deactivate, true) => UpdateState::Staged,
            (_, false) => self.update_state,
        };
    }

    fn recover_interrupted(&mut self) -> bool {
        let Some(cmd) = self.running().map(|r| r.cmd_type) else {
            return false;
        };
        let staged = self.staging_partition.as_ref();
        let state = match cmd {
            CommandType::Refresh => self.update_state,
            CommandType::Prepare => UpdateState::Available,
            CommandType::Activate | CommandType::Deactivate => match staged {
                Some(p) if p.next_to_boot => UpdateState::Ready,
                Some(_) => UpdateState::Staged,
                None => UpdateState::Idle,
            },
        };
        self.end(Outcome {
            success: false,
            exit_status: None,
            stderr: INTERRUPTED.to_string(),
            refresh: None,
        });
        self.update_state = state;
        if state == UpdateState::Available && self.chosen_update.is_none() {
            self.update_state = UpdateState::Idle;
        }
        true
    }

    fn set_partitions(&mut self, partitions: Partitions) {
        self.active_partition = partitions.active;
        self.staging_partition = partitions.staging;
        self.failed_update = partitions.failed_update;
        let boots_staged = self
            .staging_partition
            .as_ref()
            .is_some_and(|p| p.next_to_boot);
        if self.running().is_some() {
            return;
        }
        if boots_staged {
            self.update_state = UpdateState::Ready;
        } else if self.update_state == UpdateState::Ready {
            self.update_state = if self.staging_partition.is_some() {
                UpdateState::Staged
            } else if self.chosen_update.is_some() {
                UpdateState::Available
            } else {
                UpdateState::Idle
            };
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn image(version: &str) -> UpdateImage {
        UpdateImage {
            arch: "x86_64".into(),
            version: version.into(),
            variant: "dev".into(),
        }
    }

    fn partitions(staged: Option<(&str, bool)>) -> Partitions {
        Partitions {
            active: PartitionInfo {
                image: image("1.0.0"),
                next_to_boot: !staged.is_some_and(|(_, next)| next),
            },
            staging: staged.map(|(v, next)| PartitionInfo {
                image: image(v),
                next_to_boot: next,
            }),
            failed_update: None,
        }
    }

    fn ok() -> Outcome {
        Outcome {
            success: true,
            exit_status: Some(0),
            stderr: String::new(),
            refresh: None,
        }
    }

    fn failed(stderr: &str) -> Outcome {
        Outcome {
            success: false,
            exit_status: Some(1),
            stderr: stderr.into(),
            refresh: None,
        }
    }

    fn refreshed(chosen: Option<&str>) -> Outcome {
        Outcome {
            refresh: Some(Refreshed {
                available: chosen.into_iter().map(str::to_string).collect(),
                chosen: chosen.map(image),
            }),
            ..ok()
        }
    }

    fn run(status: &mut UpdateStatus, cmd: CommandType, outcome: Outcome) {
        status.check(cmd).unwrap();
        status.begin(cmd, "2024-01-01T00:00:00Z".into());
        assert!(status.running().is_some());
        status.end(outcome);
        assert!(status.running().is_none());
    }

    fn not_allowed(status: &UpdateStatus, cmd: CommandType) -> String {
        match status.check(cmd) {
            Err(Refusal::NotAllowed(text)) => text,
            other => panic!("{cmd} in {}: {other:?}", status.update_state),
        }
    }

    #[test]
    fn full_cycle_follows_thar_be_updates() {
        let mut s = initial(partitions(None));
        assert_eq!(s.update_state, UpdateState::Idle);
        run(&mut s, CommandType::Refresh, refreshed(None));
        assert_eq!(s.update_state, UpdateState::Idle);
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        assert_eq!(s.update_state, UpdateState::Available);
        assert_eq!(s.chosen_update, Some(image("1.1.0")));
        run(&mut s, CommandType::Prepare, ok());
        assert_eq!(s.update_state, UpdateState::Staged);
        run(&mut s, CommandType::Activate, ok());
        assert_eq!(s.update_state, UpdateState::Ready);
        // A refresh in Ready keeps the state, even when nothing is chosen any more.
        run(&mut s, CommandType::Refresh, refreshed(None));
        assert_eq!(s.update_state, UpdateState::Ready);
        run(&mut s, CommandType::Deactivate, ok());
        assert_eq!(s.update_state, UpdateState::Staged);
    }

    #[test]
    fn wrong_transitions_say_the_state_and_what_to_do() {
        let mut s = initial(partitions(None));
        let text = not_allowed(&s, CommandType::Prepare);
        assert!(
            text.contains("Idle") && text.contains("refresh-updates"),
            "{text}"
        );
        let text = not_allowed(&s, CommandType::Activate);
        assert!(
            text.contains("Idle") && text.contains("prepare-update"),
            "{text}"
        );
        assert!(not_allowed(&s, CommandType::Deactivate).contains("Idle"));
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        run(&mut s, CommandType::Prepare, ok());
        run(&mut s, CommandType::Activate, ok());
        s.staging_partition = partitions(Some(("1.1.0", true))).staging;
        let text = not_allowed(&s, CommandType::Prepare);
        assert!(text.contains("Ready") && text.contains("1.1.0"), "{text}");
        assert!(text.contains("deactivate-update"), "{text}");
        assert!(not_allowed(&s, CommandType::Activate).contains("reboot"));
    }

    #[test]
    fn a_running_action_blocks_every_other() {
        let mut s = initial(partitions(None));
        s.begin(CommandType::Refresh, "2024-01-01T00:00:00Z".into());
        for cmd in [
            CommandType::Refresh,
            CommandType::Prepare,
            CommandType::Activate,
            CommandType::Deactivate,
        ] {
            match s.check(cmd) {
                Err(Refusal::Busy(text)) => assert!(text.contains("'refresh'"), "{text}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn failures_keep_or_fall_back() {
        let mut s = initial(partitions(None));
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        run(&mut s, CommandType::Refresh, failed("network down"));
        assert_eq!(s.update_state, UpdateState::Available);
        assert_eq!(
            s.chosen_update,
            Some(image("1.1.0")),
            "a failed refresh forgets nothing"
        );
        run(&mut s, CommandType::Prepare, ok());
        // A failed prepare from Staged leaves a half-written set: back to Available.
        run(&mut s, CommandType::Prepare, failed("disk full"));
        assert_eq!(s.update_state, UpdateState::Available);
        let record = s.most_recent_command.clone().unwrap();
        assert_eq!(record.cmd_status, CommandStatus::Failed);
        assert_eq!(record.stderr, "disk full");
        assert_eq!(record.exit_status, Some(1));
        run(&mut s, CommandType::Prepare, ok());
        run(&mut s, CommandType::Activate, failed("gpt"));
        assert_eq!(s.update_state, UpdateState::Staged);
        run(&mut s, CommandType::Activate, ok());
        run(&mut s, CommandType::Deactivate, failed("gpt"));
        assert_eq!(s.update_state, UpdateState::Ready);
    }

    #[test]
    fn first_status_after_boot_comes_from_the_partitions() {
        assert_eq!(
            initial(partitions(Some(("1.1.0", false)))).update_state,
            UpdateState::Idle
        );
        let s = initial(partitions(Some(("1.1.0", true))));
        assert_eq!(s.update_state, UpdateState::Ready);
        assert!(!s.active_partition.next_to_boot);
    }

    #[test]
    fn partitions_changed_by_hand_correct_the_state() {
        let mut s = initial(partitions(None));
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        run(&mut s, CommandType::Prepare, ok());
        run(&mut s, CommandType::Activate, ok());
        // Someone ran `updog update-revert` by hand.
        s.set_partitions(partitions(Some(("1.1.0", false))));
        assert_eq!(s.update_state, UpdateState::Staged);
        s.set_partitions(partitions(Some(("1.1.0", true))));
        assert_eq!(s.update_state, UpdateState::Ready);
    }

    #[test]
    fn an_interrupted_action_is_failed_on_reload() {
        let mut s = initial(partitions(None));
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        s.begin(CommandType::Prepare, "2024-01-01T00:00:00Z".into());
        let text = serde_json::to_string(&s).unwrap();
        let mut reloaded: UpdateStatus = serde_json::from_str(&text).unwrap();
        assert!(reloaded.recover_interrupted());
        assert_eq!(reloaded.update_state, UpdateState::Available);
        let record = reloaded.most_recent_command.unwrap();
        assert_eq!(record.cmd_status, CommandStatus::Failed);
        assert_eq!(record.stderr, INTERRUPTED);
        assert_eq!(record.exit_status, None);

        let mut s = initial(partitions(Some(("1.1.0", true))));
        s.begin(CommandType::Deactivate, "2024-01-01T00:00:00Z".into());
        assert!(s.recover_interrupted());
        assert_eq!(s.update_state, UpdateState::Ready);
        assert!(!s.recover_interrupted(), "nothing left to recover");
    }

    #[test]
    fn document_has_bottlerocket_field_names() {
        let mut s = initial(partitions(None));
        run(&mut s, CommandType::Refresh, refreshed(Some("1.1.0")));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["update_state"], "Available");
        assert_eq!(v["available_updates"], serde_json::json!(["1.1.0"]));
        assert_eq!(v["chosen_update"]["version"], "1.1.0");
        assert_eq!(v["active_partition"]["image"]["variant"], "dev");
        assert_eq!(v["active_partition"]["next_to_boot"], true);
        assert_eq!(v["staging_partition"], serde_json::Value::Null);
        assert_eq!(v["most_recent_command"]["cmd_type"], "refresh");
        assert_eq!(v["most_recent_command"]["cmd_status"], "Success");
        assert_eq!(v["most_recent_command"]["exit_status"], 0);
        assert_eq!(v["progress"], serde_json::Value::Null);
        assert_eq!(v["failed_update"], serde_json::Value::Null);
    }
}
