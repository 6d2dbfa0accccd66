//! signpost on real disk images: a GPT from `disk_layout::create_disk` and an EFI system
//! partition with the GRUB environment block, as the image builder makes them. Every change is
//! checked three ways: our GPT reader, `sgdisk -A N:show` and the GRUB block on the disk.

use disk_layout::{
    create_disk, read_flags, read_layout, BootFlags, BootSet, Layout, PartitionFlags,
    PartitionRole, MIB,
};
use grubenv::BootSelection;
use signpost::{Error, Operation, Signpost};
use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testserver::disk::make_boot_disk;

/// A 1 GiB Ballast disk image with the fresh-image flags and a FAT EFI system partition that
/// holds the GRUB environment block derived from them.
fn make_disk(dir: &Path) -> PathBuf {
    make_boot_disk(dir, &Layout::small(), 1024 * MIB)
}

/// The attribute bits `sgdisk -A <number>:show` reports as set.
fn sgdisk_bits(disk: &Path, number: u32) -> BTreeSet<u32> {
    let output = Command::new("sgdisk")
        .args(["-A", &format!("{number}:show")])
        .arg(disk)
        .output()
        .expect("sgdisk is installed (apt-get install gdisk)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let n: u32 = fields.next()?.trim().parse().ok()?;
            let bit: u32 = fields.next()?.parse().ok()?;
            (n == number && fields.next()?.starts_with('1')).then_some(bit)
        })
        .collect()
}

fn bits_of(word: u64) -> BTreeSet<u32> {
    (0..64).filter(|b| word & (1 << b) != 0).collect()
}

fn number(disk: &Path, role: PartitionRole) -> u32 {
    read_layout(disk).unwrap().partition(role).unwrap().number
}

/// The GRUB block on the disk.
fn grub_env(disk: &Path) -> BootSelection {
    BootSelection::from_env(&grubenv::read_disk(disk).unwrap().env)
}

/// Checks that sgdisk sees `expected` and the GRUB block is the one derived from it.
fn check_disk(disk: &Path, expected: &BootFlags) {
    assert_eq!(&read_flags(disk).unwrap(), expected);
    for set in BootSet::ALL {
        let n = number(disk, PartitionRole::Boot(set));
        assert_eq!(
            sgdisk_bits(disk, n),
            bits_of(expected.get(set).to_attributes()),
            "BOOT-{set} as sgdisk shows it"
        );
    }
    let private = number(disk, PartitionRole::Private);
    let want: BTreeSet<u32> = if expected.ever_succeeded {
        BTreeSet::from([57])
    } else {
        BTreeSet::new()
    };
    assert_eq!(
        sgdisk_bits(disk, private),
        want,
        "PRIVATE as sgdisk shows it"
    );
    assert_eq!(grub_env(disk), BootSelection::from_flags(expected));
}

/// What GRUB's script does at a reset: boot the pending try (clearing it in the block) or the
/// boot set. Returns the set booted.
fn grub_boots(disk: &Path) -> BootSet {
    let on_disk = grubenv::read_disk(disk).unwrap();
    let mut selection = BootSelection::from_env(&on_disk.env);
    let booted = selection.grub_boot();
    let mut env = on_disk.env.clone();
    env.set(grubenv::TRY_SET_KEY, "").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    file.write_all_at(&env.render().unwrap(), on_disk.offset)
        .unwrap();
    booted
}

fn flags(a: (u8, u8, bool), b: (u8, u8, bool), ever: bool) -> BootFlags {
    let f = |(priority, tries_left, successful)| PartitionFlags {
        priority,
        tries_left,
        successful,
    };
    BootFlags {
        boot_a: f(a),
        boot_b: f(b),
        ever_succeeded: ever,
    }
}

/// A raw copy of everything signpost may write: both GPTs and the EFI partition.
fn snapshot(disk: &Path) -> Vec<u8> {
    std::fs::read(disk).unwrap()
}

#[test]
fn every_operation_changes_the_bits_and_the_grub_block() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    check_disk(&disk, &BootFlags::fresh_image());
    let on_a = Signpost::new(&disk, BootSet::A);

    let status = on_a.apply(Operation::MarkSuccessfulBoot).unwrap();
    check_disk(&disk, &flags((1, 0, true), (0, 0, false), true));
    assert!(status.boot_ever_succeeded);
    assert_eq!(status.next, BootSet::A);

    on_a.apply(Operation::ClearInactive).unwrap();
    check_disk(&disk, &flags((1, 0, true), (0, 0, false), true));

    let status = on_a.apply(Operation::MarkInactiveValid).unwrap();
    check_disk(&disk, &flags((1, 0, true), (0, 1, false), true));
    assert!(status.inactive_valid);
    assert_eq!(status.next, BootSet::A, "valid is not yet chosen");

    let status = on_a.apply(Operation::UpgradeToInactive).unwrap();
    check_disk(&disk, &flags((1, 0, true), (2, 1, false), true));
    assert_eq!(status.next, BootSet::B);
    assert_eq!(
        (status.grub_env.boot_set, status.grub_env.try_set),
        (BootSet::A, Some(BootSet::B))
    );

    let status = on_a.apply(Operation::CancelUpgrade).unwrap();
    check_disk(&disk, &flags((2, 0, true), (0, 1, false), true));
    assert_eq!(status.next, BootSet::A);

    // Upgrade again, B boots, comes up and marks itself successful.
    on_a.apply(Operation::UpgradeToInactive).unwrap();
    check_disk(&disk, &flags((1, 0, true), (2, 1, false), true));
    assert_eq!(grub_boots(&disk), BootSet::B);
    let on_b = Signpost::new(&disk, BootSet::B);
    let status = on_b.status().unwrap();
    assert_eq!(status.unrecorded_try, Some(BootSet::B));
    assert!(
        status.grub_env.in_sync,
        "the block is what the GPT gives once the try is recorded"
    );
    on_b.apply(Operation::MarkSuccessfulBoot).unwrap();
    check_disk(&disk, &flags((1, 0, true), (2, 0, true), true));
    assert_eq!(grub_boots(&disk), BootSet::B);
    assert_eq!(grub_boots(&disk), BootSet::B);

    // Roll back to A, which booted before.
    let status = on_b.apply(Operation::RollbackToInactive).unwrap();
    check_disk(&disk, &flags((2, 0, true), (1, 0, true), true));
    assert_eq!(status.next, BootSet::A);
    assert_eq!(grub_boots(&disk), BootSet::A);

    // Reconcile on a synced disk changes nothing at all.
    let before = snapshot(&disk);
    Signpost::new(&disk, BootSet::A)
        .apply(Operation::Reconcile)
        .unwrap();
    assert!(
        before == snapshot(&disk),
        "reconcile wrote to a synced disk"
    );
}

#[test]
fn a_new_set_that_never_succeeds_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let on_a = Signpost::new(&disk, BootSet::A);
    for op in [
        Operation::MarkSuccessfulBoot,
        Operation::ClearInactive,
        Operation::MarkInactiveValid,
        Operation::UpgradeToInactive,
    ] {
        on_a.apply(op).unwrap();
    }
    // B is tried once and hangs before mark-successful-boot; the next reset boots A.
    assert_eq!(grub_boots(&disk), BootSet::B);
    assert_eq!(grub_boots(&disk), BootSet::A);

    let status = on_a.status().unwrap();
    assert_eq!(status.next, BootSet::A);
    assert_eq!(status.unrecorded_try, Some(BootSet::B));
    assert!(!status.inactive_valid && !status.inactive_bootable);
    // The GPT still counts B's try until a command records it.
    assert_eq!(read_flags(&disk).unwrap().boot_b.tries_left, 1);
    on_a.apply(Operation::Reconcile).unwrap();
    check_disk(&disk, &flags((1, 0, true), (2, 0, false), true));
    assert_eq!(on_a.status().unwrap().unrecorded_try, None);

    // B never booted: rolling back to it is refused, and nothing is written.
    let before = snapshot(&disk);
    let err = on_a.apply(Operation::RollbackToInactive).unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("rollback-to-inactive refused")
            && message.contains("nothing was changed")
            && message.contains("never booted successfully"),
        "{message}"
    );
    assert!(before == snapshot(&disk));
}

#[test]
fn upgrade_needs_a_valid_inactive_set() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let on_a = Signpost::new(&disk, BootSet::A);
    on_a.apply(Operation::ClearInactive).unwrap();
    let before = snapshot(&disk);
    let err = on_a.apply(Operation::UpgradeToInactive).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("upgrade-to-inactive refused with A active")
            && message.contains("has not been marked valid")
            && message.contains("mark-inactive-valid"),
        "{message}"
    );
    assert!(before == snapshot(&disk), "a refusal writes nothing");
    check_disk(&disk, &BootFlags::fresh_image());
}

#[test]
fn a_block_out_of_line_is_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    // Someone edits the block by hand: boot B, which holds nothing.
    let on_disk = grubenv::read_disk(&disk).unwrap();
    let mut env = on_disk.env.clone();
    env.set(grubenv::BOOT_SET_KEY, "B").unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    file.write_all_at(&env.render().unwrap(), on_disk.offset)
        .unwrap();

    let on_a = Signpost::new(&disk, BootSet::A);
    let status = on_a.status().unwrap();
    assert!(!status.grub_env.in_sync);
    assert_eq!(
        status.next,
        BootSet::B,
        "status shows what GRUB will really do"
    );
    assert!(status.to_string().contains("NOT in sync"), "{status}");

    let status = on_a.apply(Operation::Reconcile).unwrap();
    assert!(status.grub_env.in_sync);
    check_disk(&disk, &BootFlags::fresh_image());
}

#[test]
fn not_a_ballast_disk() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 1 << 20]).unwrap();
    let err = Signpost::new(&plain, BootSet::A).status().unwrap_err();
    assert!(matches!(err, Error::Flags { .. }), "{err}");
    assert!(err.to_string().contains("plain.img"), "{err}");

    // A Ballast GPT without the GRUB block on its EFI partition.
    let bare = dir.path().join("bare.img");
    create_disk(&bare, 1024 * MIB, &Layout::small(), b"bare").unwrap();
    let err = Signpost::new(&bare, BootSet::A)
        .apply(Operation::MarkSuccessfulBoot)
        .unwrap_err();
    assert!(matches!(err, Error::GrubEnv { .. }), "{err}");
    // Nothing was written: the block is read before the GPT changes.
    assert_eq!(read_flags(&bare).unwrap(), BootFlags::fresh_image());
}

// --- The binary ---

fn signpost(disk: &Path, active: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signpost"))
        .arg("--disk")
        .arg(disk)
        .args(["--active", active])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn command_line() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());

    let text = stdout(&signpost(&disk, "A", &["status"]));
    assert!(text.contains("Active set:     A"), "{text}");
    assert!(text.contains("Next boot:      A"), "{text}");
    assert!(
        text.contains("Set A:          priority=1 tries_left=0 successful=true (bootable)"),
        "{text}"
    );
    assert!(
        text.contains("Inactive set B: valid=no bootable=no"),
        "{text}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&signpost(&disk, "A", &["status", "--json"]))).unwrap();
    assert_eq!(json["active"], "A");
    assert_eq!(json["inactive"], "B");
    assert_eq!(json["next"], "A");
    assert_eq!(json["sets"][0]["priority"], 1);
    assert_eq!(json["sets"][1]["set"], "B");
    assert_eq!(json["inactive_valid"], false);
    assert_eq!(json["grub_env"]["try_set"], serde_json::Value::Null);
    assert_eq!(json["grub_env"]["in_sync"], true);
    // The document the API server reads back (GET /status) is the one printed.
    let doc: api_types::boot::BootState = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(doc.sets.len(), 2);
    assert_eq!(serde_json::to_value(&doc).unwrap(), json);

    assert_eq!(
        stdout(&signpost(&disk, "A", &["has-boot-ever-succeeded"])),
        "false\n"
    );

    // Every changing command, with the bits and the block checked after each.
    let steps: [(&str, &str, BootFlags); 8] = [
        (
            "A",
            "mark-successful-boot",
            flags((1, 0, true), (0, 0, false), true),
        ),
        (
            "A",
            "clear-inactive",
            flags((1, 0, true), (0, 0, false), true),
        ),
        (
            "A",
            "mark-inactive-valid",
            flags((1, 0, true), (0, 1, false), true),
        ),
        (
            "A",
            "upgrade-to-inactive",
            flags((1, 0, true), (2, 1, false), true),
        ),
        (
            "A",
            "cancel-upgrade",
            flags((2, 0, true), (0, 1, false), true),
        ),
        (
            "A",
            "upgrade-to-inactive",
            flags((1, 0, true), (2, 1, false), true),
        ),
        // B boots (GRUB spends its try, recorded by the next command) and comes up.
        (
            "B",
            "mark-successful-boot",
            flags((1, 0, true), (2, 0, true), true),
        ),
        (
            "B",
            "rollback-to-inactive",
            flags((2, 0, true), (1, 0, true), true),
        ),
    ];
    for (active, command, expected) in steps {
        if active == "B" && command == "mark-successful-boot" {
            assert_eq!(grub_boots(&disk), BootSet::B);
        }
        let out = signpost(&disk, active, &[command]);
        assert!(out.status.success(), "{command}: {out:?}");
        assert!(out.stdout.is_empty(), "{command} prints nothing on stdout");
        check_disk(&disk, &expected);
    }
    assert_eq!(
        stdout(&signpost(&disk, "A", &["has-boot-ever-succeeded"])),
        "true\n"
    );

    // Refusals exit 1 with the reason on stderr.
    stdout(&signpost(&disk, "A", &["clear-inactive"]));
    let out = signpost(&disk, "A", &["upgrade-to-inactive"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("signpost: upgrade-to-inactive refused")
            && stderr.contains("mark-inactive-valid"),
        "{stderr}"
    );
    let out = signpost(&disk, "A", &["rollback-to-inactive"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot roll back to B"),
        "{out:?}"
    );

    // --disk and --active go together.
    let out = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .arg("--disk")
        .arg(&disk)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn boot_deadline_only_watches_a_set_that_never_succeeded() {
    use signpost::deadline::{watch, Outcome};
    use std::cell::Cell;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let on_a = Signpost::new(&disk, BootSet::A);
    let secs = Duration::from_secs;
    let no_sleep = |_: Duration| panic!("a successful set is not watched");
    assert_eq!(
        watch(&on_a, Some(secs(60)), secs(2), || secs(0), no_sleep).unwrap(),
        Outcome::AlreadySuccessful
    );

    // An update on B gets its try; B boots and never marks itself successful.
    on_a.apply(Operation::ClearInactive).unwrap();
    on_a.apply(Operation::MarkInactiveValid).unwrap();
    on_a.apply(Operation::UpgradeToInactive).unwrap();
    assert_eq!(grub_boots(&disk), BootSet::B);
    let on_b = Signpost::new(&disk, BootSet::B);
    let clock = Cell::new(secs(5));
    let slept = Cell::new(0);
    let outcome = watch(
        &on_b,
        Some(secs(60)),
        secs(10),
        || clock.get(),
        |d| {
            slept.set(slept.get() + 1);
            clock.set(clock.get() + d);
        },
    )
    .unwrap();
    assert_eq!(outcome, Outcome::Expired);
    assert_eq!(slept.get(), 6, "55 s in steps of 10 s");
    assert_eq!(
        clock.get(),
        secs(60),
        "the last sleep stops at the deadline"
    );
    // The reset then boots A again: GRUB already spent B's try.
    assert_eq!(grub_boots(&disk), BootSet::A);

    // The same boot marked successful half way: the watch ends early.
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(dir.path());
    let on_a = Signpost::new(&disk, BootSet::A);
    on_a.apply(Operation::MarkInactiveValid).unwrap();
    on_a.apply(Operation::UpgradeToInactive).unwrap();
    assert_eq!(grub_boots(&disk), BootSet::B);
    let on_b = Signpost::new(&disk, BootSet::B);
    let clock = Cell::new(secs(5));
    let outcome = watch(
        &on_b,
        Some(secs(60)),
        secs(10),
        || clock.get(),
        |d| {
            clock.set(clock.get() + d);
            if clock.get() >= secs(25) {
                on_b.apply(Operation::MarkSuccessfulBoot).unwrap();
            }
        },
    )
    .unwrap();
    assert_eq!(outcome, Outcome::MarkedSuccessful);
    assert_eq!(clock.get(), secs(25));
    assert_eq!(
        watch(&on_b, None, secs(1), || secs(0), no_sleep).unwrap(),
        Outcome::AlreadySuccessful
    );
}
