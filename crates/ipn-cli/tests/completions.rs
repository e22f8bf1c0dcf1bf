//! `ipn completions SHELL`: the scripts are generated from the command's
//! definition, and bash, interactive in a real terminal (tmux), completes
//! the command's subcommands and options with the bash one when Tab is
//! pressed.

mod common;

use std::path::Path;

use common::tmux::Tmux;
use common::{run, stderr, stdout, BIN, LONG};

#[test]
fn bash_completes_subcommands_and_options_from_the_generated_script() {
    let dir = Path::new(BIN).parent().unwrap().display().to_string();
    let tmux = Tmux::start(
        "complete",
        &format!("PATH='{dir}':$PATH PS1='$ ' exec bash --norc --noprofile"),
    );
    tmux.wait_for(&["$"], LONG);
    tmux.type_text("source <(ipn completions bash)");
    tmux.send("Enter");
    // One match: bash writes the rest of the word and a space (the
    // screen shows the space once something follows it).
    tmux.type_text("ipn sta");
    tmux.send("Tab");
    tmux.type_text("/tmp/x");
    tmux.wait_for(&["$ ipn status /tmp/x"], LONG);
    // Then the options of that subcommand.
    tmux.type_text(" --pro");
    tmux.send("Tab");
    tmux.type_text("#");
    tmux.wait_for(&["$ ipn status /tmp/x --prometheus #"], LONG);
    tmux.send("C-u");
    // Several matches: a second Tab lists them.
    tmux.type_text("ipn completions ");
    tmux.send("Tab");
    tmux.send("Tab");
    let screen = tmux.wait_for(&["bash", "zsh", "fish"], LONG);
    assert!(!screen.contains("command not found"), "{screen}");
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    let help = stdout(&run(&["--help"]));
    for shell in ["zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{}", stderr(&out));
        let script = stdout(&out);
        for sub in [
            "create",
            "status",
            "top",
            "tap",
            "vhost-user",
            "completions",
        ] {
            assert!(help.contains(sub), "{sub} is not a subcommand");
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = run(&["completions", "tcsh"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}
