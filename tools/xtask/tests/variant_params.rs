//! Every variant ships as a VM image and is tested under software emulation, so each one boots
//! with the kernel parameters the test harness gives emulated guests.

use std::path::Path;

#[test]
fn every_variant_boots_with_the_emulated_guest_parameters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("variants")).unwrap() {
        let entry = entry.unwrap();
        if !entry.path().join("variant.toml").exists() {
            continue;
        }
        let name = entry.file_name().into_string().unwrap();
        let variant = buildsys::variant::load_variant(&root, &name).unwrap();
        for param in vmtest::EMULATED_GUEST_PARAMS {
            assert!(
                variant.kernel_parameters.iter().any(|p| p == param),
                "variant {name} lacks the kernel parameter {param}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "found only {checked} variants");
}
