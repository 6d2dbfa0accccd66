//! A node and its update repository for tests: a real TUF repository made with the `repo`
//! crate from fake but well-formed images of a few MiB, served over HTTP on 127.0.0.1, and a
//! real disk image file with Ballast's GPT and the GRUB environment block on its EFI partition.

#![allow(dead_code)]

use clap::Parser;
use disk_layout::{read_flags, read_layout, BootFlags, BootSet, Layout, PartitionRole, MIB};
use repo::serve::ServedDir;
use repo::{add_images, AddOptions, ImageFile, ImageSet, KeyDir, KeyOptions, Published, RepoDir};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use testserver::disk::make_boot_disk;
use updog::{Args, Outcome};

/// Sizes of the fake images: BOOT, ROOT, HASH.
pub const BOOT_SIZE: usize = 1 << 20;
pub const ROOT_SIZE: usize = 3 << 20;
pub const HASH_SIZE: usize = 128 << 10;

/// Deterministic bytes that look like an image: random 4 KiB blocks with zero blocks between
/// them, so zstd has something to do but the output is not trivial.
pub fn image_bytes(seed: &str, size: usize) -> Vec<u8> {
    let mut state: u64 = seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(size);
    let mut block = 0;
    while out.len() < size {
        let n = (size - out.len()).min(4096);
        if block % 3 == 2 {
            out.extend(std::iter::repeat_n(0u8, n));
        } else {
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                out.push(state as u8);
            }
        }
        block += 1;
    }
    out
}

/// A node with disk, config and os-release, and its repository.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub keys: KeyDir,
    pub repo: RepoDir,
    pub server: ServedDir,
    pub disk: PathBuf,
    pub active: BootSet,
    /// Image files by "variant arch version".
    pub images: BTreeMap<String, ImageSet>,
}

impl Fixture {
    /// Keys, an empty repository served over HTTP, a disk with the small layout.
    pub async fn new() -> Fixture {
        Self::with_layout(&Layout::small()).await
    }

    pub async fn with_layout(layout: &Layout) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::generate(dir.path().join("keys"), &KeyOptions::default())
            .await
            .unwrap();
        let repo = RepoDir::new(dir.path().join("repo"));
        std::fs::create_dir_all(repo.dir()).unwrap();
        let server = ServedDir::start(repo.dir()).unwrap();
        let disk = make_boot_disk(dir.path(), layout, layout.min_disk_size() + 8 * MIB);
        let fixture = Fixture {
            dir,
            keys,
            repo,
            server,
            disk,
            active: BootSet::A,
            images: BTreeMap::new(),
        };
        fixture.write_config(0, "latest", false);
        fixture.write_os_release("1.0.0");
        fixture
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Publishes fake images of `dev x86_64 version`.
    pub async fn publish(&mut self, version: &str) -> Published {
        self.publish_with("dev", "x86_64", version, AddOptions::default())
            .await
    }

    pub async fn publish_with(
        &mut self,
        variant: &str,
        arch: &str,
        version: &str,
        options: AddOptions,
    ) -> Published {
        let key = format!("{variant} {arch} {version}");
        let images = self.path(&format!("images/{variant}-{arch}-{version}"));
        std::fs::create_dir_all(&images).unwrap();
        let file = |name: &str, size: usize| {
            let path = images.join(name);
            std::fs::write(&path, image_bytes(&format!("{key} {name}"), size)).unwrap();
            ImageFile::new(path)
        };
        let set = ImageSet {
            variant: variant.into(),
            arch: arch.into(),
            version: version.parse().unwrap(),
            build_id: format!("b{}", version.replace('.', "")),
            boot: file("boot.ext4", BOOT_SIZE),
            root: file("root.erofs", ROOT_SIZE),
            hash: file("root.verity", HASH_SIZE),
        };
        let options = AddOptions {
            zstd_level: 3,
            ..options
        };
        let published = add_images(&self.repo, &self.keys, &set, &options)
            .await
            .unwrap();
        self.images.insert(key, set);
        published
    }

    /// The image files of `dev x86_64 version`: boot, root, hash.
    pub fn image_files(&self, version: &str) -> [Vec<u8>; 3] {
        let set = &self.images[&format!("dev x86_64 {version}")];
        [&set.boot, &set.root, &set.hash].map(|f| std::fs::read(&f.path).unwrap())
    }

    pub fn write_config(&self, seed: u32, version_lock: &str, ignore_waves: bool) {
        let url = self.server.url();
        std::fs::write(
            self.path("updog.toml"),
            format!(
                "metadata_base_url = \"{url}metadata/\"\n\
                 targets_base_url = \"{url}targets/\"\n\
                 seed = {seed}\n\
                 version_lock = \"{version_lock}\"\n\
                 ignore_waves = {ignore_waves}\n"
            ),
        )
        .unwrap();
    }

    pub fn write_os_release(&self, version: &str) {
        std::fs::write(
            self.path("os-release"),
            format!(
                "NAME=Ballast\nID=ballast\nVERSION_ID={version}\nVARIANT_ID=dev\n\
                 BUILD_ID=b{}\nARCH=x86_64\n",
                version.replace('.', "")
            ),
        )
        .unwrap();
    }

    /// The global options pointing at this fixture, then `command`.
    pub fn argv(&self, command: &[&str]) -> Vec<String> {
        let p = |name: &str| self.path(name).display().to_string();
        let mut argv: Vec<String> = vec![
            "updog".into(),
            "--config".into(),
            p("updog.toml"),
            "--os-release".into(),
            p("os-release"),
            "--root-json".into(),
            self.keys.root_json().display().to_string(),
            "--cache-dir".into(),
            p("cache"),
            "--migrations-dir".into(),
            p("migrations"),
            "--disk".into(),
            self.disk.display().to_string(),
            "--active".into(),
            self.active.letter().into(),
        ];
        argv.extend(command.iter().map(|s| s.to_string()));
        argv
    }

    /// Runs updog in this process; returns its outcome and what it printed.
    pub async fn run(&self, command: &[&str]) -> (updog::Result<Outcome>, String) {
        let args = Args::try_parse_from(self.argv(command)).unwrap();
        let mut out = Vec::new();
        let result = updog::run(&args, &mut out).await;
        (result, String::from_utf8(out).unwrap())
    }

    /// Runs a command that must succeed and print JSON.
    pub async fn json(&self, command: &[&str]) -> serde_json::Value {
        let mut command = command.to_vec();
        command.push("--json");
        let (result, out) = self.run(&command).await;
        let outcome = result.unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(outcome, Outcome::Done, "{command:?}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Runs a command that must fail; returns the message.
    pub async fn error(&self, command: &[&str]) -> String {
        let (result, _) = self.run(command).await;
        match result {
            Err(e) => e.to_string(),
            Ok(outcome) => panic!("{command:?} succeeded: {outcome:?}"),
        }
    }

    pub fn flags(&self) -> BootFlags {
        read_flags(&self.disk).unwrap()
    }

    /// The first `len` bytes of partition `role`.
    pub fn partition(&self, role: PartitionRole, len: usize) -> Vec<u8> {
        let layout = read_layout(&self.disk).unwrap();
        let p = layout.partition(role).unwrap();
        let mut buf = vec![0; len];
        std::fs::File::open(&self.disk)
            .unwrap()
            .read_exact_at(&mut buf, p.offset)
            .unwrap();
        buf
    }

    /// Whether the inactive partitions hold exactly the images of `version`.
    pub fn inactive_holds(&self, version: &str) -> bool {
        let set = self.active.other();
        let [boot, root, hash] = self.image_files(version);
        self.partition(PartitionRole::Boot(set), boot.len()) == boot
            && self.partition(PartitionRole::Root(set), root.len()) == root
            && self.partition(PartitionRole::Hash(set), hash.len()) == hash
    }

    pub fn sets_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path("cache/sets.json")).unwrap()).unwrap()
    }

    /// The file holding target `name` in the repository (`<sha256>.<name>`).
    pub fn target_file(&self, name: &str) -> PathBuf {
        let suffix = format!(".{name}");
        std::fs::read_dir(self.repo.targets_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&suffix))
            .unwrap_or_else(|| panic!("no file for {name}"))
    }

    /// The state of the disk that a refused command must leave alone: the GPT boot flags, the
    /// GRUB block and the first MiB of the inactive ROOT.
    pub fn snapshot(&self) -> (BootFlags, grubenv::BootSelection, Vec<u8>) {
        let env = grubenv::read_disk(&self.disk).unwrap();
        (
            self.flags(),
            grubenv::BootSelection::from_env(&env.env),
            self.partition(PartitionRole::Root(self.active.other()), 1 << 20),
        )
    }
}
