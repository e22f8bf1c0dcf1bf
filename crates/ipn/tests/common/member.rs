//! A real unprivileged user, for tests of what the kernel lets a member of
//! a network's group (or an outsider) do: peers and shell commands run as
//! that user through `setpriv`.
//!
//! Needs root (it creates a system user and a group). CI runs as root;
//! elsewhere these tests fail saying so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::peer::Peer;
use super::unique_path;

/// The test user: not a member of [`GROUP`] unless a command asks for it.
pub const USER: &str = "ipn-test-user";
/// The network group the tests give networks to.
pub const GROUP: &str = "ipn-test-net";

/// The test user, and a copy of this test binary it can run.
#[derive(Debug)]
pub struct TestUser {
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
    /// [`GROUP`]'s gid.
    pub net_gid: u32,
    exe: ExeCopy,
}

impl TestUser {
    /// Creates the user and the group if needed (the user is not a member
    /// of the group: commands add it explicitly, see [`TestUser::peer`]).
    pub fn get() -> TestUser {
        use nix::unistd::{Group, User};
        ipn_test_support::require_root(
            &format!(
                "this test creates the user {USER} and the group {GROUP} and acts as that user"
            ),
            &["setpriv"],
        );
        if Group::from_name(GROUP).unwrap().is_none() {
            let _ = Command::new("groupadd").args(["--system", GROUP]).status();
        }
        if User::from_name(USER).unwrap().is_none() {
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ])
                .status();
        }
        let user = User::from_name(USER)
            .unwrap()
            .unwrap_or_else(|| panic!("could not create user {USER}"));
        let group = Group::from_name(GROUP)
            .unwrap()
            .unwrap_or_else(|| panic!("could not create group {GROUP}"));
        assert!(
            !group.mem.iter().any(|m| m == USER),
            "{USER} must not be a member of {GROUP}"
        );
        TestUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            net_gid: group.gid.as_raw(),
            exe: ExeCopy::new(),
        }
    }

    /// `setpriv ... --` as the user, with the network group if `member`.
    fn wrapper(&self, member: bool) -> Vec<String> {
        vec![
            "setpriv".to_owned(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            if member {
                format!("--groups={}", self.net_gid)
            } else {
                "--clear-groups".to_owned()
            },
            "--".to_owned(),
        ]
    }

    /// A script peer (see `peer`) running as the user.
    pub fn peer(&self, member: bool) -> Peer {
        let mut peer = Peer::spawn_via(&self.wrapper(member), &self.exe.0, "script", &[]);
        peer.expect_word("ready", std::time::Duration::from_secs(10));
        peer
    }

    /// Runs `sh -c script` as the user (a member of the network group).
    pub fn shell(&self, script: &str) -> Output {
        self.shell_command(script)
            .output()
            .expect("running a shell as the test user")
    }

    /// Starts `sh -c script` as the user (a member) in the background,
    /// its output and errors going to `log` (created here, by root: the
    /// shell writes through the descriptor it inherits), so that a test
    /// can check what the script did and show its errors.
    pub fn spawn_shell(&self, script: &str, log: &Path) -> Child {
        let out = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning the log's descriptor");
        self.shell_command(script)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting a shell as the test user")
    }

    fn shell_command(&self, script: &str) -> Command {
        let wrapper = self.wrapper(true);
        let mut command = Command::new(&wrapper[0]);
        command.args(&wrapper[1..]).args(["sh", "-c", script]);
        command
    }
}

/// A copy of this test binary that the unprivileged user can run (the
/// build directory may not be reachable for it).
#[derive(Debug)]
struct ExeCopy(PathBuf);

impl ExeCopy {
    fn new() -> ExeCopy {
        let dir = unique_path(&format!("exe-{:?}", std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("peer");
        std::fs::copy(super::peer::current_exe(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        ExeCopy(exe)
    }
}

impl Drop for ExeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}
