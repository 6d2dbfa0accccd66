//! UEFI boot path: OVMF starts from the harness's pflash setup (code read-only, a private copy
//! of the variable store), finds nothing bootable on a blank disk and falls back to its built-in
//! shell, all on the serial console. The VM also carries the API socket bridge, a host forward
//! and a guest forward, so QEMU itself checks the syntax of those options.

use std::path::Path;
use std::time::Duration;
use vmtest::{free_local_port, GuestForward, Proto, Vm, VmConfig};

#[test]
fn ovmf_reaches_its_shell_on_the_serial_console() {
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/vmtest");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("blank.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    // QEMU connects a guestfwd's TCP target when it starts, so something must listen there.
    let repo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let repo_port = repo.local_addr().unwrap().port();
    let api = dir.path().join("api.sock");
    let config = VmConfig::uefi(&disk)
        .name("uefi-blank")
        .memory_mib(256)
        .api_socket(&api)
        .host_forward(Proto::Tcp, free_local_port().unwrap(), 22)
        .guest_forward(GuestForward::to_host_tcp(
            std::net::Ipv4Addr::new(10, 0, 2, 100),
            80,
            repo_port,
        ))
        .log_dir(build.join("logs"));
    let mut vm = Vm::start(config).expect("start QEMU with OVMF");
    let t = vm
        .wait_for_console("UEFI Interactive Shell", Duration::from_secs(120))
        .unwrap();
    assert!(vm.console_contains("BdsDxe"), "{}", vm.console_tail());
    assert_eq!(vm.api_socket(), Some(api.as_path()));
    vm.connect_api(Duration::from_secs(10))
        .expect("QEMU listens on the API socket");
    println!("uefi: QEMU start -> OVMF shell: {:.2} s", t.as_secs_f64());
    vm.kill().unwrap();
    assert!(!vm.is_running());
}
