//! The A/B boot state kept in GPT attribute bits, and the operations on it.
//!
//! Each BOOT partition carries three fields in the type-specific half of its 64-bit attribute
//! word, in the layout of the ChromeOS/CoreOS "gptprio" scheme that Bottlerocket uses:
//!
//! | bits  | field                                                      |
//! |-------|------------------------------------------------------------|
//! | 48-51 | priority (0-15; 0 = never boot this set)                   |
//! | 52-55 | tries left (0-15; boots the set may still attempt)         |
//! | 56    | successful (this set has completed a boot)                 |
//!
//! Bit 57 of the PRIVATE partition records that any boot ever succeeded on this disk.
//!
//! The operations here are pure: they change an in-memory [`BootFlags`] and never touch a
//! disk. [`crate::read_flags`] and [`crate::write_flags`] move the state to and from the GPT.

use crate::error::{self, Result};
use snafu::ensure;
use std::fmt;

/// First bit of the priority field.
pub const PRIORITY_SHIFT: u32 = 48;
/// First bit of the tries-left field.
pub const TRIES_LEFT_SHIFT: u32 = 52;
/// The "successful" bit.
pub const SUCCESSFUL_BIT: u32 = 56;
/// Bit of the PRIVATE partition set once any boot has succeeded.
pub const BOOT_EVER_SUCCEEDED_BIT: u32 = 57;
/// All attribute bits owned by [`PartitionFlags`].
pub const GPTPRIO_MASK: u64 = 0x1ff << PRIORITY_SHIFT;
/// Largest value of the 4-bit priority and tries-left fields.
pub const FIELD_MAX: u8 = 15;

/// One of the two partition sets (BOOT, ROOT, HASH, RESERVED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BootSet {
    /// Partitions 2-5.
    A,
    /// Partitions 6-9.
    B,
}

impl BootSet {
    /// Both sets, A first (the order in which GRUB breaks ties).
    pub const ALL: [BootSet; 2] = [BootSet::A, BootSet::B];

    /// The other set.
    pub fn other(self) -> BootSet {
        match self {
            BootSet::A => BootSet::B,
            BootSet::B => BootSet::A,
        }
    }

    /// `"A"` or `"B"`.
    pub fn letter(self) -> &'static str {
        match self {
            BootSet::A => "A",
            BootSet::B => "B",
        }
    }
}

impl fmt::Display for BootSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// The boot-selection fields of one BOOT partition.
///
/// `priority` and `tries_left` are 4-bit fields on disk; larger values are stored as 15.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PartitionFlags {
    /// Higher wins; 0 means the set is never chosen.
    pub priority: u8,
    /// Boot attempts left before the set counts as failed (unless it is successful).
    pub tries_left: u8,
    /// The set has completed a boot.
    pub successful: bool,
}

impl PartitionFlags {
    /// Read the fields out of a GPT attribute word; other bits are ignored.
    pub fn from_attributes(attributes: u64) -> Self {
        Self {
            priority: ((attributes >> PRIORITY_SHIFT) & 0xf) as u8,
            tries_left: ((attributes >> TRIES_LEFT_SHIFT) & 0xf) as u8,
            successful: attributes & (1 << SUCCESSFUL_BIT) != 0,
        }
    }

    /// The attribute bits for these fields alone (all other bits 0).
    pub fn to_attributes(self) -> u64 {
        (u64::from(self.priority.min(FIELD_MAX)) << PRIORITY_SHIFT)
            | (u64::from(self.tries_left.min(FIELD_MAX)) << TRIES_LEFT_SHIFT)
            | (u64::from(self.successful) << SUCCESSFUL_BIT)
    }

    /// `attributes` with bits 48-56 replaced by these fields and every other bit kept.
    pub fn apply_to(self, attributes: u64) -> u64 {
        (attributes & !GPTPRIO_MASK) | self.to_attributes()
    }

    /// Whether the set holds an image that may be booted: it has priority and tries left, or it
    /// has booted successfully before.
    pub fn is_bootable(self) -> bool {
        (self.priority > 0 && self.tries_left > 0) || self.successful
    }

    /// Whether the boot loader may choose this set at all (see [`BootFlags::next_boot_set`]).
    pub fn is_candidate(self) -> bool {
        self.priority > 0 && (self.tries_left > 0 || self.successful)
    }
}

impl fmt::Display for PartitionFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority={} tries_left={} successful={}",
            self.priority, self.tries_left, self.successful
        )
    }
}

/// The A/B state of a disk: both BOOT partitions' flags and PRIVATE's "ever succeeded" bit.
///
/// The operations take the *active* set, the one the running system booted from (signpost finds
/// it from the device under `/`); "inactive" is always the other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct BootFlags {
    /// Flags of BOOT-A.
    pub boot_a: PartitionFlags,
    /// Flags of BOOT-B.
    pub boot_b: PartitionFlags,
    /// PRIVATE bit 57: some boot from this disk has been marked successful.
    pub ever_succeeded: bool,
}

impl BootFlags {
    /// The state of a freshly built image: A has priority 1 and is marked successful (bits 48
    /// and 56), B is empty, and no boot has succeeded yet.
    pub fn fresh_image() -> Self {
        Self {
            boot_a: PartitionFlags {
                priority: 1,
                tries_left: 0,
                successful: true,
            },
            boot_b: PartitionFlags::default(),
            ever_succeeded: false,
        }
    }

    /// The flags of `set`.
    pub fn get(&self, set: BootSet) -> PartitionFlags {
        match set {
            BootSet::A => self.boot_a,
            BootSet::B => self.boot_b,
        }
    }

    /// The flags of `set`, for changing.
    pub fn get_mut(&mut self, set: BootSet) -> &mut PartitionFlags {
        match set {
            BootSet::A => &mut self.boot_a,
            BootSet::B => &mut self.boot_b,
        }
    }

    /// Before an update is written: make the inactive set unbootable (priority 0, tries 0, not
    /// successful), so that a half-written image is never chosen.
    pub fn clear_inactive(&mut self, active: BootSet) {
        *self.get_mut(active.other()) = PartitionFlags::default();
    }

    /// After the update is written and checked: give the inactive set one try. It is still not
    /// chosen until [`upgrade_to_inactive`](Self::upgrade_to_inactive) gives it priority.
    pub fn mark_inactive_valid(&mut self, active: BootSet) {
        self.get_mut(active.other()).tries_left = 1;
    }

    /// Boot the inactive set next: it gets priority 2 and loses its "successful" mark (it must
    /// prove itself again); the active set drops to priority 1, so it is chosen again if the new
    /// set uses up its try without succeeding.
    ///
    /// Fails, changing nothing, if the inactive set was not marked valid.
    pub fn upgrade_to_inactive(&mut self, active: BootSet) -> Result<()> {
        let inactive = active.other();
        ensure!(
            self.get(inactive).tries_left > 0,
            error::InactiveNotValidSnafu { inactive }
        );
        let target = self.get_mut(inactive);
        target.priority = 2;
        target.successful = false;
        self.get_mut(active).priority = 1;
        Ok(())
    }

    /// Undo [`upgrade_to_inactive`](Self::upgrade_to_inactive): the inactive set gets priority 0
    /// and the active set priority 2.
    pub fn cancel_upgrade(&mut self, active: BootSet) {
        self.get_mut(active.other()).priority = 0;
        self.get_mut(active).priority = 2;
    }

    /// The running system came up: mark the active set successful, and remember that a boot
    /// has succeeded on this disk.
    pub fn mark_successful_boot(&mut self, active: BootSet) {
        self.get_mut(active).successful = true;
        self.ever_succeeded = true;
    }

    /// Boot the previous image next: the inactive set gets priority 2, the active set 1.
    ///
    /// Fails, changing nothing, unless the inactive set is bootable (it booted successfully
    /// before, or it has priority and tries left).
    pub fn rollback_to_inactive(&mut self, active: BootSet) -> Result<()> {
        let inactive = active.other();
        ensure!(
            self.get(inactive).is_bootable(),
            error::RollbackNotBootableSnafu { inactive }
        );
        self.get_mut(inactive).priority = 2;
        self.get_mut(active).priority = 1;
        Ok(())
    }

    /// The set the boot loader would choose, without changing anything; see
    /// [`next_boot_set`](Self::next_boot_set).
    pub fn peek_next_boot_set(&self) -> Option<BootSet> {
        let mut best: Option<BootSet> = None;
        for set in BootSet::ALL {
            let flags = self.get(set);
            if !flags.is_candidate() {
                continue;
            }
            // Strictly greater: on equal priority the earlier set (A) stays chosen.
            if best.is_none_or(|b| flags.priority > self.get(b).priority) {
                best = Some(set);
            }
        }
        best
    }

    /// Choose the set to boot as the boot loader does (GRUB's `gptprio.next`), and consume a
    /// try: among the sets with priority above 0 that have tries left or are successful, take
    /// the highest priority (A on a tie). If the chosen set is not successful, one try is used
    /// up, so an image that never marks success is not chosen again once its tries run out.
    /// `None` means no set is bootable.
    pub fn next_boot_set(&mut self) -> Option<BootSet> {
        let chosen = self.peek_next_boot_set()?;
        let flags = self.get_mut(chosen);
        if !flags.successful {
            flags.tries_left = flags.tries_left.saturating_sub(1);
        }
        Some(chosen)
    }
}

impl fmt::Display for BootFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BOOT-A: {}; BOOT-B: {}; boot ever succeeded: {}",
            self.boot_a, self.boot_b, self.ever_succeeded
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Every value the on-disk fields can hold.
    fn all_flags() -> impl Iterator<Item = PartitionFlags> + Clone {
        (0..=FIELD_MAX).flat_map(|priority| {
            (0..=FIELD_MAX).flat_map(move |tries_left| {
                [false, true]
                    .into_iter()
                    .map(move |successful| PartitionFlags {
                        priority,
                        tries_left,
                        successful,
                    })
            })
        })
    }

    /// Every state of a disk: both BOOT partitions and the PRIVATE bit.
    fn all_states() -> impl Iterator<Item = BootFlags> {
        all_flags().flat_map(|boot_a| {
            all_flags().flat_map(move |boot_b| {
                [false, true]
                    .into_iter()
                    .map(move |ever_succeeded| BootFlags {
                        boot_a,
                        boot_b,
                        ever_succeeded,
                    })
            })
        })
    }

    #[test]
    fn attribute_round_trip() {
        let noise = [
            0u64,
            u64::MAX,
            0xdead_beef_0000_0005,
            1 << 60 | 1 << 47 | 1 << 57,
        ];
        for flags in all_flags() {
            let bits = flags.to_attributes();
            assert_eq!(bits & !GPTPRIO_MASK, 0);
            assert_eq!(PartitionFlags::from_attributes(bits), flags);
            for other in noise {
                let word = flags.apply_to(other);
                assert_eq!(PartitionFlags::from_attributes(word), flags);
                assert_eq!(word & !GPTPRIO_MASK, other & !GPTPRIO_MASK);
            }
        }
    }

    #[test]
    fn known_bit_positions() {
        assert_eq!(
            BootFlags::fresh_image().boot_a.to_attributes(),
            (1 << 48) | (1 << 56)
        );
        let f = PartitionFlags {
            priority: 2,
            tries_left: 1,
            successful: false,
        };
        assert_eq!(f.to_attributes(), (1 << 49) | (1 << 52));
        let f = PartitionFlags {
            priority: 15,
            tries_left: 15,
            successful: true,
        };
        assert_eq!(f.to_attributes(), 0x1ff << 48);
        // Values too large for 4 bits saturate instead of spilling into other fields.
        let f = PartitionFlags {
            priority: 200,
            tries_left: 16,
            successful: false,
        };
        assert_eq!(f.to_attributes(), 0xff << 48);
    }

    #[test]
    fn fresh_image_boots_a_forever() {
        let mut state = BootFlags::fresh_image();
        for _ in 0..20 {
            assert_eq!(state.next_boot_set(), Some(BootSet::A));
        }
        assert_eq!(state, BootFlags::fresh_image());
    }

    /// Check each operation against its definition on every state and both active sets.
    #[test]
    fn operations_on_every_state() {
        for state in all_states() {
            for active in BootSet::ALL {
                let inactive = active.other();
                let before_active = state.get(active);
                let before_inactive = state.get(inactive);

                let mut s = state;
                s.clear_inactive(active);
                assert_eq!(s.get(inactive), PartitionFlags::default());
                assert_eq!(s.get(active), before_active);
                assert_eq!(s.ever_succeeded, state.ever_succeeded);

                let mut s = state;
                s.mark_inactive_valid(active);
                assert_eq!(
                    s.get(inactive),
                    PartitionFlags {
                        tries_left: 1,
                        ..before_inactive
                    }
                );
                assert_eq!(s.get(active), before_active);

                let mut s = state;
                match s.upgrade_to_inactive(active) {
                    Ok(()) => {
                        assert!(before_inactive.tries_left > 0);
                        assert_eq!(
                            s.get(inactive),
                            PartitionFlags {
                                priority: 2,
                                successful: false,
                                ..before_inactive
                            }
                        );
                        assert_eq!(
                            s.get(active),
                            PartitionFlags {
                                priority: 1,
                                ..before_active
                            }
                        );
                        // The new set is what boots next.
                        assert_eq!(s.peek_next_boot_set(), Some(inactive));
                    }
                    Err(e) => {
                        assert_eq!(before_inactive.tries_left, 0);
                        assert!(
                            matches!(e, Error::InactiveNotValid { inactive: i } if i == inactive)
                        );
                        assert_eq!(s, state, "a refused upgrade changes nothing");
                    }
                }

                let mut s = state;
                s.cancel_upgrade(active);
                assert_eq!(
                    s.get(inactive),
                    PartitionFlags {
                        priority: 0,
                        ..before_inactive
                    }
                );
                assert_eq!(
                    s.get(active),
                    PartitionFlags {
                        priority: 2,
                        ..before_active
                    }
                );
                assert_ne!(s.peek_next_boot_set(), Some(inactive));

                let mut s = state;
                s.mark_successful_boot(active);
                assert_eq!(
                    s.get(active),
                    PartitionFlags {
                        successful: true,
                        ..before_active
                    }
                );
                assert_eq!(s.get(inactive), before_inactive);
                assert!(s.ever_succeeded);

                let mut s = state;
                match s.rollback_to_inactive(active) {
                    Ok(()) => {
                        assert!(before_inactive.is_bootable());
                        assert_eq!(
                            s.get(inactive),
                            PartitionFlags {
                                priority: 2,
                                ..before_inactive
                            }
                        );
                        assert_eq!(
                            s.get(active),
                            PartitionFlags {
                                priority: 1,
                                ..before_active
                            }
                        );
                        assert_eq!(s.peek_next_boot_set(), Some(inactive));
                    }
                    Err(e) => {
                        assert!(!before_inactive.is_bootable());
                        assert!(matches!(e, Error::RollbackNotBootable { .. }));
                        assert_eq!(s, state, "a refused rollback changes nothing");
                    }
                }
            }
        }
    }

    /// The boot choice against its definition, on every state.
    #[test]
    fn next_boot_set_on_every_state() {
        for state in all_states() {
            let mut s = state;
            let chosen = s.next_boot_set();
            assert_eq!(chosen, state.peek_next_boot_set());
            assert_eq!(s.ever_succeeded, state.ever_succeeded);
            let Some(chosen) = chosen else {
                assert!(!state.boot_a.is_candidate() && !state.boot_b.is_candidate());
                assert_eq!(s, state);
                continue;
            };
            let picked = state.get(chosen);
            let other = state.get(chosen.other());
            assert!(picked.priority > 0);
            assert!(picked.tries_left > 0 || picked.successful);
            if other.is_candidate() {
                assert!(
                    picked.priority > other.priority
                        || (picked.priority == other.priority && chosen == BootSet::A)
                );
            }
            // Only the chosen set changes, and only its tries, and only if not successful.
            assert_eq!(s.get(chosen.other()), other);
            let expected_tries = if picked.successful {
                picked.tries_left
            } else {
                picked.tries_left - 1
            };
            assert_eq!(
                s.get(chosen),
                PartitionFlags {
                    tries_left: expected_tries,
                    ..picked
                }
            );
        }
    }

    /// Update from A to B, B comes up: B stays chosen, A is the fallback.
    #[test]
    fn successful_update() {
        let mut s = BootFlags::fresh_image();
        assert_eq!(s.next_boot_set(), Some(BootSet::A));
        s.mark_successful_boot(BootSet::A);
        assert!(s.ever_succeeded);

        s.clear_inactive(BootSet::A);
        assert!(s.upgrade_to_inactive(BootSet::A).is_err(), "not valid yet");
        s.mark_inactive_valid(BootSet::A);
        s.upgrade_to_inactive(BootSet::A).unwrap();
        assert_eq!(s.next_boot_set(), Some(BootSet::B));
        assert_eq!(s.boot_b.tries_left, 0);
        s.mark_successful_boot(BootSet::B);
        for _ in 0..5 {
            assert_eq!(s.next_boot_set(), Some(BootSet::B));
        }
        // A is still there to go back to.
        s.rollback_to_inactive(BootSet::B).unwrap();
        assert_eq!(s.next_boot_set(), Some(BootSet::A));
    }

    /// Update from A to B, B never marks success: the boot after that is A again, for good.
    #[test]
    fn failed_update_falls_back() {
        let mut s = BootFlags::fresh_image();
        s.mark_successful_boot(BootSet::A);
        s.clear_inactive(BootSet::A);
        s.mark_inactive_valid(BootSet::A);
        s.upgrade_to_inactive(BootSet::A).unwrap();
        assert_eq!(s.next_boot_set(), Some(BootSet::B));
        // B hangs or crashes before mark-successful-boot.
        for _ in 0..5 {
            assert_eq!(s.next_boot_set(), Some(BootSet::A));
        }
        // B is not bootable, so rolling back to it from A is refused.
        assert!(matches!(
            s.rollback_to_inactive(BootSet::A),
            Err(Error::RollbackNotBootable {
                inactive: BootSet::B
            })
        ));
    }

    /// From every state in which A is running and successful, an update to B that never
    /// succeeds always ends with A chosen on the boot after B's single try.
    #[test]
    fn failed_update_falls_back_from_every_state() {
        for state in all_states() {
            if !state.boot_a.successful {
                continue;
            }
            let mut s = state;
            s.clear_inactive(BootSet::A);
            s.mark_inactive_valid(BootSet::A);
            s.upgrade_to_inactive(BootSet::A).unwrap();
            assert_eq!(s.next_boot_set(), Some(BootSet::B), "from {state}");
            assert_eq!(s.next_boot_set(), Some(BootSet::A), "from {state}");
            assert_eq!(s.next_boot_set(), Some(BootSet::A), "from {state}");
        }
    }

    #[test]
    fn cancel_keeps_active() {
        let mut s = BootFlags::fresh_image();
        s.clear_inactive(BootSet::A);
        s.mark_inactive_valid(BootSet::A);
        s.upgrade_to_inactive(BootSet::A).unwrap();
        s.cancel_upgrade(BootSet::A);
        assert_eq!(s.next_boot_set(), Some(BootSet::A));
        assert_eq!(s.boot_a.priority, 2);
        assert_eq!(s.boot_b.priority, 0);
    }

    #[test]
    fn nothing_bootable() {
        let mut s = BootFlags::default();
        assert_eq!(s.next_boot_set(), None);
        s.boot_a.successful = true; // successful but priority 0: never chosen
        assert_eq!(s.next_boot_set(), None);
    }
}
