//! Every first-party systemd unit, as the packages ship it, within its exposure budget
//! (`xtask::sandbox::BUDGETS`), rated by the real `systemd-analyze security` in offline mode
//! against a root staged from the packages' unit files (drop-ins included).

use xtask::sandbox;

#[test]
fn every_first_party_unit_is_within_its_exposure_budget() {
    let packages = xtask::host::root().join("packages");
    let units = sandbox::first_party_units(&packages).unwrap();
    // The units the boot depends on must be found by the scan, or it has stopped working.
    for unit in [
        "apiserver.service",
        "storewolf.service",
        "settings-applier.service",
    ] {
        assert!(
            units.iter().any(|u| u == unit),
            "{unit} not found: {units:?}"
        );
    }
    let root = tempfile::tempdir().unwrap();
    sandbox::stage_units(&packages, root.path()).unwrap();
    let exposures = sandbox::offline_exposures(root.path(), &units).unwrap();
    println!("{}", sandbox::table(&exposures));
    let mut problems = sandbox::violations(&exposures);
    problems.extend(sandbox::namespace_order_violations(root.path(), &units).unwrap());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every budget names a unit that still exists, so the table cannot keep dead entries.
    for budget in sandbox::BUDGETS {
        assert!(
            units.iter().any(|u| u == budget.unit),
            "{} has a budget but no package ships it",
            budget.unit
        );
    }
}

#[test]
fn a_unit_without_a_sandbox_is_over_budget() {
    // The same check on an unsandboxed copy of a unit must fail: the budget can bite.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(sandbox::UNIT_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("storewolf.service"),
        "[Service]\nType=oneshot\nExecStart=/usr/bin/storewolf\n",
    )
    .unwrap();
    let exposures =
        sandbox::offline_exposures(root.path(), &["storewolf.service".to_string()]).unwrap();
    assert!(exposures[0].1 > 9.0, "{exposures:?}");
    let problems = sandbox::violations(&exposures);
    assert_eq!(problems.len(), 1, "{problems:?}");
}
