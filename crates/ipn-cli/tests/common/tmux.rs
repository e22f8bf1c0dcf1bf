//! A tmux server of a test's own, to run a program in a real terminal:
//! start it, send keys, read the screen back.

use std::process::Command;
use std::time::{Duration, Instant};

use super::must;

/// A tmux server of this test's own (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server with one 150x40 session running `shell_command`.
    pub fn start(name: &str, shell_command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("ipn-test-{name}-{}", std::process::id()),
        };
        tmux.must(&[
            "new-session",
            "-d",
            "-x",
            "150",
            "-y",
            "40",
            "sh",
            "-c",
            shell_command,
        ]);
        tmux
    }

    #[track_caller]
    pub fn must(&self, args: &[&str]) -> String {
        let mut all = vec!["-L", &self.socket, "-f", "/dev/null"];
        all.extend_from_slice(args);
        must("tmux", &all)
    }

    pub fn screen(&self) -> String {
        self.must(&["capture-pane", "-p"])
    }

    /// Presses the key `key` (tmux's names: Enter, Tab, C-c, q).
    pub fn send(&self, key: &str) {
        self.must(&["send-keys", key]);
    }

    /// Types `text` as it is (no key names).
    pub fn type_text(&self, text: &str) {
        self.must(&["send-keys", "-l", text]);
    }

    /// Whether the pane is on the alternate screen (a full-screen program
    /// holds it).
    pub fn alternate_screen(&self) -> bool {
        self.must(&["display-message", "-p", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Waits until the screen holds every one of `texts`; fails showing
    /// the screen after `limit`.
    #[track_caller]
    pub fn wait_for(&self, texts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {texts:?} on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
