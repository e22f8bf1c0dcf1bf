//! `ipn top NET`: a full-screen view of a network, refreshed every second.
//!
//! Two halves that never mix:
//! - gathering ([`View::between`]): two readings of the network's status
//!   and the time between them become what the screen shows (rates per
//!   port, totals, the switch's addresses), as plain data with every
//!   text already escaped; no terminal involved, so it is unit-tested;
//! - drawing ([`draw`]): that data laid out with ratatui widgets; the
//!   terminal itself (raw mode, alternate screen, keys) is crossterm's,
//!   through ratatui.
//!
//! Invariants:
//! - Whatever way the command ends (q, Esc, Ctrl-C, SIGINT/SIGTERM/SIGHUP,
//!   an error, a panic) the terminal is given back as it was: [`Screen`]
//!   restores it when dropped, and ratatui's panic hook does on a panic.
//! - Member-written text (descriptions) goes through
//!   [`crate::escape::text`], so it cannot drive or fool the terminal.
//! - A rate is shown only when both readings are of the same owner of the
//!   slot (same pid, counters not gone back); otherwise `-`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use ipn::{Network, PortState, PortStatus, Protocol, Status};
use nix::sys::signal::Signal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use crate::signals::{self, TICK};
use crate::vlan::{mac_text, membership_text};
use crate::Outcome;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The network
    pub path: PathBuf,
    /// Seconds between refreshes (0.1 to 3600)
    #[arg(long, short = 'i', value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
}

fn parse_interval(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| (0.1..=3600.0).contains(secs))
        .ok_or_else(|| format!("'{text}' is not an interval: give seconds from 0.1 to 3600"))
}

pub fn run(args: &TopArgs) -> anyhow::Result<Outcome> {
    if !std::io::stdout().is_terminal() {
        bail!("ipn top draws on a terminal and standard output is not one; use `ipn status` (or --json, --prometheus) instead");
    }
    let network = Network::open(&args.path)?;
    signals::install_for(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP])?;
    let interval = Duration::from_secs_f64(args.interval);
    let mut screen = Screen::enter()?;
    let mut before = Reading::take(&network);
    let mut view = View::between(None, &before, args.interval);
    loop {
        screen
            .terminal
            .draw(|frame| draw(frame, &view))
            .context("drawing on the terminal")?;
        match wait_for_key(before.at + interval)? {
            Wake::Quit => return Ok(Outcome::Done),
            Wake::Signal(signal) => return Ok(Outcome::Signal(signal)),
            // As if SIGHUP had come: nobody is left to show anything to.
            Wake::HungUp => return Ok(Outcome::Signal(Signal::SIGHUP as i32)),
            Wake::Redraw => continue,
            Wake::Tick => {}
        }
        let now = Reading::take(&network);
        view = View::between(Some(&before), &now, args.interval);
        before = now;
    }
}

/// The terminal in full-screen raw mode; put back as it was when dropped.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        // try_init also installs a panic hook that restores the terminal.
        let terminal = ratatui::try_init().context("setting up the terminal")?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Leaves raw mode and the alternate screen; the terminal field,
        // dropped next, shows the cursor again.
        if let Err(e) = ratatui::try_restore() {
            eprintln!("ipn: restoring the terminal: {e}");
        }
    }
}

/// Why [`wait_for_key`] returned.
enum Wake {
    /// Time for a new reading.
    Tick,
    /// The terminal changed size: draw again.
    Redraw,
    /// q, Esc or Ctrl-C.
    Quit,
    /// A terminating signal.
    Signal(i32),
    /// The terminal hung up (its window closed, its tmux killed).
    HungUp,
}

/// Whether the terminal hung up, looked at without waiting.
fn hung_up() -> bool {
    matches!(wait_on_terminal(Duration::ZERO), TerminalState::HungUp)
}

/// What waiting on the terminal found.
enum TerminalState {
    /// Input to read (or nothing came within the time).
    Quiet,
    HungUp,
}

/// Waits at most `timeout` for input on the terminal (standard input),
/// or its hang-up. crossterm's own poll reads a hung-up terminal's
/// end-of-file again and again without returning: it is only asked once
/// this says there is input.
fn wait_on_terminal(timeout: Duration) -> TerminalState {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
        return TerminalState::Quiet;
    }
    let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
    match fds[0].revents() {
        Some(r) if r.intersects(gone) => TerminalState::HungUp,
        _ => TerminalState::Quiet,
    }
}

/// Waits until `deadline` for a key, in slices of [`TICK`] so that a
/// signal is noticed quickly.
fn wait_for_key(deadline: Instant) -> anyhow::Result<Wake> {
    loop {
        if let Some(signal) = signals::caught() {
            return Ok(Wake::Signal(signal));
        }
        if hung_up() {
            return Ok(Wake::HungUp);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Wake::Tick);
        }
        if !event::poll(Duration::ZERO).context("reading the terminal")? {
            // Nothing buffered: wait on the terminal ourselves, so that a
            // hang-up ends the wait too.
            if let TerminalState::HungUp = wait_on_terminal(left.min(TICK)) {
                return Ok(Wake::HungUp);
            }
            continue;
        }
        match event::read().context("reading the terminal")? {
            Event::Key(key) if key.kind == KeyEventKind::Press => {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                    return Ok(Wake::Quit);
                }
            }
            Event::Resize(..) => return Ok(Wake::Redraw),
            _ => {}
        }
    }
}

/// The network's status and when it was read.
pub struct Reading {
    at: Instant,
    status: Status,
}

impl Reading {
    fn take(network: &Network) -> Reading {
        Reading {
            at: Instant::now(),
            status: network.status(),
        }
    }
}

/// What the screen shows, all text escaped.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// First line: the network and its parameters.
    pub title: String,
    /// Second line: joined ports and the whole network's rates.
    pub summary: String,
    pub ports: Vec<PortRow>,
    /// Switch networks only: learned addresses, behind the busiest
    /// sending ports first.
    pub addresses: Vec<AddressRow>,
    pub switch: bool,
}

/// Per second, over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub tx_frames: f64,
    pub tx_bytes: f64,
    pub rx_frames: f64,
    pub rx_bytes: f64,
    pub dropped: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub index: u32,
    pub pid: String,
    pub state: &'static str,
    /// None on the first reading, or when the slot changed owner.
    pub rates: Option<Rates>,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub vlan: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddressRow {
    pub mac: String,
    pub vlan: String,
    pub port: u32,
    /// Frames per second the port behind it sent, when known.
    pub port_tx_frames: Option<f64>,
}

impl View {
    /// The view from the reading `now` and the one before it (none at the
    /// start); `interval` is only shown.
    pub fn between(before: Option<&Reading>, now: &Reading, interval: f64) -> View {
        let status = &now.status;
        let seconds = before.map(|b| now.at.saturating_duration_since(b.at).as_secs_f64());
        let ports: Vec<PortRow> = status
            .ports
            .iter()
            .map(|p| {
                let earlier =
                    before.and_then(|b| b.status.ports.iter().find(|e| e.index == p.index));
                let rates = match (earlier, seconds) {
                    (Some(e), Some(s)) if s > 0.0 => rates(e, p, s),
                    _ => None,
                };
                port_row(p, rates)
            })
            .collect();
        let total = ports
            .iter()
            .filter_map(|p| p.rates)
            .fold(Rates::default(), |a, r| Rates {
                tx_frames: a.tx_frames + r.tx_frames,
                tx_bytes: a.tx_bytes + r.tx_bytes,
                rx_frames: a.rx_frames + r.rx_frames,
                rx_bytes: a.rx_bytes + r.rx_bytes,
                dropped: a.dropped + r.dropped,
            });
        let joined = status
            .ports
            .iter()
            .filter(|p| matches!(p.state, PortState::Active | PortState::Joining))
            .count();
        View {
            title: format!(
                "ipn top {}: {} {}, mtu {}, {} port slots; every {interval} s; q quits",
                escaped(&status.path.to_string_lossy()),
                if status.lossless { "lossless" } else { "lossy" },
                status.protocol.name(),
                status.mtu,
                status.max_ports,
            ),
            summary: format!(
                "{joined} ports joined (readers {}, writers {}); sent {} frames/s {}/s, received {} frames/s {}/s, dropped {}/s",
                status.membership.readers,
                status.membership.writers,
                count_text(total.tx_frames),
                bytes_text(total.tx_bytes),
                count_text(total.rx_frames),
                bytes_text(total.rx_bytes),
                count_text(total.dropped),
            ),
            addresses: address_rows(status, &ports),
            ports,
            switch: status.protocol == Protocol::Switch,
        }
    }
}

/// Rates of a port between two readings, if both are of the same owner.
fn rates(before: &PortStatus, now: &PortStatus, seconds: f64) -> Option<Rates> {
    let same_owner = before.pid == now.pid
        && now.tx_frames >= before.tx_frames
        && now.rx_frames >= before.rx_frames;
    if !same_owner {
        return None;
    }
    let per_second = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
    Some(Rates {
        tx_frames: per_second(now.tx_frames, before.tx_frames),
        tx_bytes: per_second(now.tx_bytes, before.tx_bytes),
        rx_frames: per_second(now.rx_frames, before.rx_frames),
        rx_bytes: per_second(now.rx_bytes, before.rx_bytes),
        dropped: per_second(
            now.rx_dropped + now.tx_dropped,
            before.rx_dropped + before.tx_dropped,
        ),
    })
}

fn port_row(p: &PortStatus, rates: Option<Rates>) -> PortRow {
    PortRow {
        index: p.index,
        pid: match p.pid {
            0 => "?".into(),
            pid => pid.to_string(),
        },
        state: p.state.name(),
        rates,
        rx_dropped: p.rx_dropped,
        tx_dropped: p.tx_dropped,
        vlan: membership_text(&p.vlan),
        description: escaped(&p.description),
    }
}

/// The switch's address table, the addresses behind the ports that sent
/// the most frames in the last interval first. The switch keeps no count
/// per address, only the last 16 each port sent from, so this is as close
/// to "the busiest addresses" as its status gets.
fn address_rows(status: &Status, ports: &[PortRow]) -> Vec<AddressRow> {
    let tx_rate = |index: u32| {
        ports
            .iter()
            .find(|p| p.index == index)
            .and_then(|p| p.rates)
            .map(|r| r.tx_frames)
    };
    let mut rows: Vec<AddressRow> = status
        .ports
        .iter()
        .flat_map(|p| {
            p.addresses.iter().map(move |(vlan, mac)| AddressRow {
                mac: mac_text(mac),
                vlan: vlan.map_or_else(|| "untagged".into(), |v| v.to_string()),
                port: p.index,
                port_tx_frames: tx_rate(p.index),
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        let rate = |r: &AddressRow| r.port_tx_frames.unwrap_or(-1.0);
        rate(b)
            .total_cmp(&rate(a))
            .then(a.port.cmp(&b.port))
            .then(a.mac.cmp(&b.mac))
    });
    rows
}

/// Member-written text, safe to show.
fn escaped(text: &str) -> String {
    crate::escape::text(text)
}

/// A rate of things: 0, 12, 3.4k, 5.6M.
fn count_text(per_second: f64) -> String {
    scaled(per_second, 1000.0, &["", "k", "M", "G"])
}

/// A rate of bytes: 0 B, 12 B, 3.4 KiB, 5.6 MiB.
fn bytes_text(per_second: f64) -> String {
    scaled(per_second, 1024.0, &[" B", " KiB", " MiB", " GiB"])
}

fn scaled(mut value: f64, step: f64, units: &[&str]) -> String {
    let mut unit = 0;
    while value >= step && unit < units.len() - 1 {
        value /= step;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0}{}", units[0])
    } else {
        format!("{value:.1}{}", units[unit])
    }
}

/// Lays `view` out on the frame: title, summary, the ports, and on a
/// switch the address table below them.
pub fn draw(frame: &mut Frame, view: &View) {
    let address_height = if view.switch {
        // Header, border and up to a third of the screen of addresses.
        (view.addresses.len().max(1) as u16 + 3).min(frame.area().height / 3)
    } else {
        0
    };
    let [title, summary, ports, addresses] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(address_height),
    ])
    .areas(frame.area());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    frame.render_widget(
        Paragraph::new(Line::styled(view.title.as_str(), bold)),
        title,
    );
    frame.render_widget(Paragraph::new(view.summary.as_str()), summary);
    draw_ports(frame, view, ports);
    if view.switch {
        draw_addresses(frame, view, addresses);
    }
}

fn draw_ports(frame: &mut Frame, view: &View, area: Rect) {
    let header = Row::new([
        "PORT",
        "PID",
        "STATE",
        "TX FR/S",
        "TX B/S",
        "RX FR/S",
        "RX B/S",
        "RX DROP",
        "TX DROP",
        "VLAN",
        "DESCRIPTION",
    ])
    .style(Style::default().add_modifier(Modifier::REVERSED));
    let rows = view.ports.iter().map(|p| {
        let rate = |pick: fn(&Rates) -> f64, text: fn(f64) -> String| {
            p.rates
                .as_ref()
                .map_or_else(|| "-".to_string(), |r| text(pick(r)))
        };
        Row::new([
            p.index.to_string(),
            p.pid.clone(),
            p.state.to_string(),
            rate(|r| r.tx_frames, count_text),
            rate(|r| r.tx_bytes, bytes_text),
            rate(|r| r.rx_frames, count_text),
            rate(|r| r.rx_bytes, bytes_text),
            p.rx_dropped.to_string(),
            p.tx_dropped.to_string(),
            p.vlan.clone(),
            p.description.clone(),
        ])
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(16),
        Constraint::Fill(1),
    ];
    let title = if view.ports.is_empty() {
        " ports: none joined "
    } else {
        " ports "
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title)),
        area,
    );
}

fn draw_addresses(frame: &mut Frame, view: &View, area: Rect) {
    let header = Row::new(["ADDRESS", "VLAN", "PORT", "PORT TX FR/S"])
        .style(Style::default().add_modifier(Modifier::REVERSED));
    let rows = view.addresses.iter().map(|a| {
        Row::new([
            a.mac.clone(),
            a.vlan.clone(),
            a.port.to_string(),
            a.port_tx_frames.map_or_else(|| "-".into(), count_text),
        ])
    });
    let widths = [
        Constraint::Length(17),
        Constraint::Length(8),
        Constraint::Length(4),
        Constraint::Length(12),
    ];
    let title = if view.addresses.is_empty() {
        " addresses the switch learned: none yet "
    } else {
        " addresses the switch learned, busiest sending ports first "
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipn::ethernet::Vlan;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn port(index: u32, pid: u32, tx_frames: u64, description: &str) -> PortStatus {
        PortStatus {
            index,
            pid,
            description: description.into(),
            state: PortState::Active,
            reading: true,
            writing: true,
            vlan: Vlan::Access(10),
            addresses: vec![(Some(10), [2, 0, 0, 0, 0, index as u8])],
            tx_frames,
            tx_bytes: tx_frames * 100,
            rx_frames: 0,
            rx_bytes: 0,
            rx_dropped: 3,
            tx_dropped: 0,
        }
    }

    fn reading(at: Instant, ports: Vec<PortStatus>) -> Reading {
        Reading {
            at,
            status: Status {
                path: "/tmp/lan".into(),
                protocol: Protocol::Switch,
                max_ports: 64,
                mtu: 1514,
                ring_slots: 256,
                ring_bytes: 256 << 10,
                memory: 17 << 20,
                lossless: false,
                membership: Default::default(),
                ports,
            },
        }
    }

    #[test]
    fn rates_come_from_two_readings_of_the_same_owner_only() {
        let t0 = Instant::now();
        let before = reading(t0, vec![port(0, 100, 10, "a"), port(1, 101, 50, "b")]);
        // Port 1's slot now belongs to another process: no rate for it.
        let now = reading(
            t0 + Duration::from_secs(2),
            vec![port(0, 100, 30, "a"), port(1, 202, 5, "b")],
        );
        let view = View::between(Some(&before), &now, 1.0);
        let r = view.ports[0].rates.unwrap();
        assert_eq!((r.tx_frames, r.tx_bytes), (10.0, 1000.0));
        assert_eq!(view.ports[1].rates, None);
        assert!(
            view.summary.contains("sent 10 frames/s 1000 B/s"),
            "{}",
            view.summary
        );
        // The address behind the sending port comes first.
        assert_eq!(view.addresses[0].port, 0);
        assert_eq!(view.addresses[0].port_tx_frames, Some(10.0));
        assert_eq!(View::between(None, &now, 1.0).ports[0].rates, None);
    }

    #[test]
    fn descriptions_are_escaped_before_they_reach_the_screen() {
        let now = reading(Instant::now(), vec![port(0, 1, 0, "evil\x1b[2J\nx")]);
        let view = View::between(None, &now, 1.0);
        assert_eq!(view.ports[0].description, "evil\\x1b[2J\\nx");
    }

    #[test]
    fn the_screen_shows_ports_rates_vlans_and_addresses() {
        let t0 = Instant::now();
        let before = reading(t0, vec![port(0, 100, 0, "ipn pub")]);
        let now = reading(
            t0 + Duration::from_secs(1),
            vec![port(0, 100, 2500, "ipn pub")],
        );
        let view = View::between(Some(&before), &now, 1.0);
        let mut terminal = Terminal::new(TestBackend::new(130, 20)).unwrap();
        terminal.draw(|frame| draw(frame, &view)).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .chunks(130)
            .map(|line| line.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        for text in [
            "ipn top /tmp/lan: lossy switch",
            "2.5k",
            "244.1 KiB",
            "access 10",
            "ipn pub",
            "02:00:00:00:00:00",
        ] {
            assert!(screen.contains(text), "{text:?} not on screen:\n{screen}");
        }
    }

    #[test]
    fn numbers_are_scaled_for_reading() {
        assert_eq!(count_text(0.0), "0");
        assert_eq!(count_text(999.0), "999");
        assert_eq!(count_text(1500.0), "1.5k");
        assert_eq!(bytes_text(2048.0), "2.0 KiB");
        assert_eq!(bytes_text(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert!(parse_interval("0").is_err());
        assert_eq!(parse_interval("0.5"), Ok(0.5));
    }
}
