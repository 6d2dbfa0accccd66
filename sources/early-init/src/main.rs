//! `init`: the first process of the Ballast initramfs. All logic lives in the library.

fn main() -> std::process::ExitCode {
    early_init::run_as_pid1()
}
