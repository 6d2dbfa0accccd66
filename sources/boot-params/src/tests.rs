//! Writer/parser round trips and the parser's refusals.

use super::*;
use std::path::PathBuf;

const HASH_HEX: &str = "4a3c0bd4b5d0b1a5c1b7a0e0a1e36c4e0ab8e1e1b7a9c0fbd3a2d1e0c9b8a7f6";

fn full() -> String {
    format!(
        "BOOT_IMAGE=/vmlinuz console=ttyS0 quiet ballast.root=PARTLABEL=ROOT-A \
         ballast.hash=PARTLABEL=HASH-A ballast.roothash={HASH_HEX} ballast.salt=00ff \
         ballast.datablocks=2560"
    )
}

fn sample_root() -> VerityRoot {
    VerityRoot {
        root: DeviceSpec::PartLabel("ROOT-B".into()),
        hash: DeviceSpec::PartLabel("HASH-B".into()),
        root_hash: HASH_HEX.into(),
        salt: "cd".repeat(32),
        data_blocks: 42,
        hash_start_block: 0,
        data: Some(DeviceSpec::PartLabel("DATA".into())),
    }
}

#[test]
fn writer_spells_the_parameters_in_builder_order() {
    let root = sample_root();
    assert_eq!(
        root.to_cmdline_args(),
        format!(
            "ballast.root=PARTLABEL=ROOT-B ballast.hash=PARTLABEL=HASH-B \
             ballast.roothash={HASH_HEX} ballast.salt={} ballast.datablocks=42 \
             ballast.data=PARTLABEL=DATA",
            "cd".repeat(32)
        )
    );
    let mut other = root.clone();
    other.hash_start_block = 1;
    other.data = None;
    other.hash = DeviceSpec::Path("/dev/vda4".into());
    assert!(other
        .to_string()
        .ends_with(" ballast.hash=/dev/vda4 ballast.roothash=4a3c0bd4b5d0b1a5c1b7a0e0a1e36c4e0ab8e1e1b7a9c0fbd3a2d1e0c9b8a7f6 ballast.salt=cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd ballast.datablocks=42 ballast.hashstart=1"));
}

#[test]
fn write_then_parse_gives_the_same_value() {
    let mut root = sample_root();
    assert_eq!(VerityRoot::parse(&root.to_cmdline_args()), Ok(root.clone()));
    root.hash_start_block = 1;
    root.data = None;
    root.salt = "-".into();
    root.root = DeviceSpec::Path("/dev/nvme0n1p3".into());
    assert_eq!(VerityRoot::parse(&root.to_string()), Ok(root.clone()));

    let mut params = BootParams::new(root);
    assert_eq!(BootParams::parse(&params.to_string()), Ok(params.clone()));
    params.init = "/sbin/testinit".into();
    params.debug = true;
    params.on_failure = FailureAction::PowerOff;
    assert_eq!(BootParams::parse(&params.to_string()), Ok(params));
}

/// A command line as `/proc/cmdline` shows it: the loader's `BOOT_IMAGE`, unrelated and
/// quoted parameters around the builder's, the variant's own `ballast.*` parameters, a `--`
/// and a trailing newline.
#[test]
fn parses_a_realistic_proc_cmdline() {
    let root = sample_root();
    let proc_cmdline = format!(
        "BOOT_IMAGE=(hd0,gpt6)/vmlinuz console=ttyS0,115200n8 ballast.boot-deadline=120 \
         \"dyndbg=file foo.c +p\" net.ifnames=0 {root} ballast.onfailure=poweroff \
         systemd.log_level=\"debug\" -- single\n"
    );
    assert_eq!(VerityRoot::parse(&proc_cmdline), Ok(root.clone()));
    let params = BootParams::parse(&proc_cmdline).unwrap();
    assert_eq!(params.verity, root);
    assert_eq!(params.on_failure, FailureAction::PowerOff);
    assert_eq!(params.init, PathBuf::from(DEFAULT_INIT));

    let cmdline = Cmdline::parse(&proc_cmdline);
    assert_eq!(cmdline.get(BOOT_DEADLINE), Some("120"));
    assert_eq!(cmdline.get("dyndbg"), Some("file foo.c +p"));
    assert_eq!(cmdline.get("systemd.log_level"), Some("debug"));
    assert_eq!(cmdline.get(ROOT), Some("PARTLABEL=ROOT-B"));
}

/// The builder writes the partition names with GRUB's `${ballast_set}`; GRUB expands it
/// before the kernel sees the line.
#[test]
fn the_builders_grub_form_expands_to_a_parsable_line() {
    let mut root = sample_root();
    root.root = DeviceSpec::PartLabel("ROOT-${ballast_set}".into());
    root.hash = DeviceSpec::PartLabel("HASH-${ballast_set}".into());
    let expanded = root.to_string().replace("${ballast_set}", "A");
    let parsed = VerityRoot::parse(&expanded).unwrap();
    assert_eq!(parsed.root, DeviceSpec::PartLabel("ROOT-A".into()));
    assert_eq!(parsed.hash, DeviceSpec::PartLabel("HASH-A".into()));
}

#[test]
fn parses_the_minimal_set_with_defaults() {
    let p = BootParams::parse(&full()).unwrap();
    assert_eq!(p.verity.root, DeviceSpec::PartLabel("ROOT-A".into()));
    assert_eq!(p.verity.hash, DeviceSpec::PartLabel("HASH-A".into()));
    assert_eq!(p.verity.root_hash, HASH_HEX);
    assert_eq!(p.verity.salt, "00ff");
    assert_eq!(p.verity.data_blocks, 2560);
    assert_eq!(p.verity.hash_start_block, 0);
    assert_eq!(p.verity.data, None);
    assert_eq!(p.init, PathBuf::from(DEFAULT_INIT));
    assert!(!p.debug);
    assert_eq!(p.on_failure, FailureAction::Reboot);
}

#[test]
fn parses_optional_keys_paths_and_quotes() {
    let line = format!(
        "{} ballast.data=/dev/vdb1 ballast.init=\"/sbin/testinit\" ballast.debug \
         ballast.onfailure=poweroff ballast.hashstart=1 ballast.future=whatever",
        full().replace("PARTLABEL=HASH-A", "/dev/vda2")
    );
    let p = BootParams::parse(&line).unwrap();
    assert_eq!(p.verity.hash, DeviceSpec::Path("/dev/vda2".into()));
    assert_eq!(p.verity.data, Some(DeviceSpec::Path("/dev/vdb1".into())));
    assert_eq!(p.init, PathBuf::from("/sbin/testinit"));
    assert!(p.debug);
    assert_eq!(p.on_failure, FailureAction::PowerOff);
    assert_eq!(p.verity.hash_start_block, 1);
    assert!(
        !BootParams::parse(&format!("{line} ballast.debug=no"))
            .unwrap()
            .debug
    );
}

#[test]
fn last_occurrence_wins_and_hash_is_lowercased() {
    let line = format!(
        "{} ballast.datablocks=7 ballast.roothash={}",
        full(),
        HASH_HEX.to_uppercase()
    );
    let p = BootParams::parse(&line).unwrap();
    assert_eq!(p.verity.data_blocks, 7);
    assert_eq!(p.verity.root_hash, HASH_HEX);
}

#[test]
fn missing_keys_are_named() {
    let err = BootParams::parse("console=ttyS0").unwrap_err();
    assert_eq!(err, Error::MissingParam { key: ROOT });
    let line = full().replace("ballast.salt=00ff", "");
    let err = BootParams::parse(&line).unwrap_err();
    assert!(err.to_string().contains("ballast.salt"), "{err}");
    let err = VerityRoot::parse(&line).unwrap_err();
    assert_eq!(err, Error::MissingParam { key: SALT });
}

#[test]
fn rejects_bad_values() {
    for (from, to) in [
        (HASH_HEX, "abc"),
        (HASH_HEX, &"g".repeat(64)),
        ("ballast.salt=00ff", "ballast.salt=0"),
        ("ballast.salt=00ff", "ballast.salt=zz"),
        (
            "ballast.salt=00ff",
            &format!("ballast.salt={}", "00".repeat(257)),
        ),
        ("ballast.datablocks=2560", "ballast.datablocks=0"),
        ("ballast.datablocks=2560", "ballast.datablocks=-1"),
        (
            "ballast.datablocks=2560",
            "ballast.datablocks=18446744073709551615",
        ),
        ("ballast.root=PARTLABEL=ROOT-A", "ballast.root=ROOT-A"),
        ("ballast.root=PARTLABEL=ROOT-A", "ballast.root=PARTLABEL="),
        ("ballast.root=PARTLABEL=ROOT-A", "ballast.root"),
        ("ballast.root=PARTLABEL=ROOT-A", "ballast.root=/dev/"),
    ] {
        let line = full().replace(from, to);
        for err in [
            BootParams::parse(&line).expect_err(&line),
            VerityRoot::parse(&line).expect_err(&line),
        ] {
            assert!(matches!(err, Error::InvalidParam { .. }), "{line}: {err}");
        }
    }
    for extra in [
        "ballast.init=sbin/init",
        "ballast.onfailure=explode",
        "ballast.hashstart=x",
        "ballast.future",
    ] {
        let line = format!("{} {extra}", full());
        assert!(BootParams::parse(&line).is_err(), "{line}");
    }
    // The verity parser reads only its own keys.
    let line = format!("{} ballast.init=sbin/init ballast.future", full());
    assert!(VerityRoot::parse(&line).is_ok());
}

#[test]
fn messages_name_the_parameter() {
    let line = full().replace(HASH_HEX, "not-a-hash");
    assert_eq!(
        BootParams::parse(&line).unwrap_err().to_string(),
        "ballast.roothash=not-a-hash is invalid: expected 64 hex digits (a sha256 digest)"
    );
    assert_eq!(
        BootParams::parse("").unwrap_err().to_string(),
        "the kernel command line has no ballast.root=...; the boot loader configuration must \
         set it"
    );
}

#[test]
fn salt_may_be_absent_marker() {
    let line = full().replace("ballast.salt=00ff", "ballast.salt=-");
    assert_eq!(BootParams::parse(&line).unwrap().verity.salt, "-");
}

#[test]
fn failure_action_is_read_even_from_a_broken_line() {
    assert_eq!(failure_action(""), FailureAction::Reboot);
    assert_eq!(
        failure_action("ballast.roothash=nonsense ballast.onfailure=poweroff"),
        FailureAction::PowerOff
    );
    assert_eq!(
        failure_action("ballast.onfailure=poweroff ballast.onfailure=bogus"),
        FailureAction::PowerOff
    );
    assert_eq!(FailureAction::PowerOff.to_string(), "powering off");
}

#[test]
fn builder_owned_parameters() {
    for key in [ROOT, HASH, ROOT_HASH, SALT, DATA_BLOCKS, DATA] {
        assert!(VerityRoot::PARAMS.contains(&key), "{key}");
    }
    for key in [INIT, DEBUG, ON_FAILURE, BOOT_DEADLINE, USER_DATA, IMDS] {
        assert!(!VerityRoot::PARAMS.contains(&key), "{key}");
        assert!(key.starts_with(PREFIX));
    }
}
