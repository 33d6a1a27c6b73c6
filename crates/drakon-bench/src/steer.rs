//! `--steer-receive`: loopback's receive processing moved to the generator's core for the length of a run.
//!
//! On loopback, a `send()` runs the receiving side's kernel TCP work (the softirq, `tcp_v4_rcv`, waking the reader)
//! on the sender's core, so a server fanning out to local clients pays their receive path on top of its own send
//! path: about 4.3 µs per 100-byte send on the 2-vCPU machine the figures come from, against about 2.2 µs with the
//! receive work elsewhere, which is what a server pays when its clients are on other machines. Receive Packet
//! Steering on `lo` hands that work to the CPUs of its `rps_cpus` mask instead; writing the generator's core there
//! puts it with the clients, where it belongs.
//!
//! Steered packets wait in the target CPU's receive backlog, which unsteered loopback never uses. Its default bound
//! (`net.core.netdev_max_backlog`, 1000) is far below one fan-out burst (a packet per subscriber in a few
//! milliseconds), and every packet dropped there comes back as a TCP retransmission 200 ms or more later, so the
//! bound is raised for the run too. Both values are put back when the [`Guard`] drops.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Loopback's single receive queue.
const RPS_CPUS: &str = "/sys/class/net/lo/queues/rx-0/rps_cpus";

const NETDEV_MAX_BACKLOG: &str = "/proc/sys/net/core/netdev_max_backlog";

/// The receive backlog bound while steering: a burst of the largest fan-out the generator drives (100,000
/// subscribers in `nodes`) and their clients' acknowledgements fit. Packets in it cost memory only while the
/// generator's core is behind.
const STEERED_BACKLOG: u64 = 262_144;

/// What was asked and what was done, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiveSteering {
    /// `--steer-receive` was given.
    pub requested: bool,
    /// Loopback's receive work ran on the generator's core during the run.
    pub on: bool,
    /// The mask written to `rps_cpus`, and the one it had before (restored at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps_cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps_cpus_before: Option<String>,
    /// `net.core.netdev_max_backlog` during the run, and before (restored at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netdev_max_backlog: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netdev_max_backlog_before: Option<String>,
    /// Why steering was asked for but is off, or what did not go as planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl ReceiveSteering {
    /// One line for the report's setup.
    pub fn describe(&self, generator_core: Option<usize>) -> String {
        match (self.on, generator_core, &self.note) {
            (true, Some(core), _) => format!(
                "loopback receive work steered to core {core} (--steer-receive: lo rps_cpus = {}, \
                 netdev_max_backlog = {})",
                self.rps_cpus.as_deref().unwrap_or_default(),
                self.netdev_max_backlog.as_deref().unwrap_or("unchanged"),
            ),
            (_, _, Some(note)) => format!("loopback receive work NOT steered although asked: {note}"),
            _ => "loopback receive work on the sending core (not steered)".into(),
        }
    }
}

/// Puts the previous values back when dropped: at the end of the run, on error, on the time limit, on a signal.
#[derive(Debug, Default)]
pub struct Guard {
    /// Files and their previous contents, in the order they were written.
    restore: Vec<(PathBuf, String)>,
}

impl Guard {
    /// Writes `value` to `path`, remembering what was there; returns that.
    fn set(&mut self, path: &Path, value: &str) -> std::io::Result<String> {
        let previous = std::fs::read_to_string(path)?.trim().to_owned();
        std::fs::write(path, value)?;
        self.restore.push((path.to_owned(), previous.clone()));
        Ok(previous)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (path, previous) in self.restore.iter().rev() {
            match std::fs::write(path, previous) {
                Ok(()) => eprintln!("note: receive steering undone: {} = {previous} again", path.display()),
                Err(e) => eprintln!(
                    "warning: could not restore {}: {e}; restore it by hand: echo {previous} > {}",
                    path.display(),
                    path.display()
                ),
            }
        }
    }
}

/// Steers loopback's receive work to `generator_core` when `requested`; without root or pinning, or when the kernel
/// refuses, it says why and the run goes on unsteered.
pub fn steer(requested: bool, generator_core: Option<usize>) -> (ReceiveSteering, Option<Guard>) {
    if !requested {
        return (ReceiveSteering::default(), None);
    }
    let refused = |why: String| {
        eprintln!("note: --steer-receive: {why}; the run goes on without it");
        (ReceiveSteering { requested, note: Some(why), ..ReceiveSteering::default() }, None)
    };
    let Some(core) = generator_core else {
        return refused("needs the generator pinned to its own core (no --no-pin, 2 cores, `taskset`)".into());
    };
    if !rustix::process::geteuid().is_root() {
        return refused(format!("writing {RPS_CPUS} needs root"));
    }
    let mut guard = Guard::default();
    let mask = cpu_mask(core);
    let rps_before = match guard.set(Path::new(RPS_CPUS), &mask) {
        Ok(before) => before,
        Err(e) => return refused(format!("could not set {RPS_CPUS}: {e}")),
    };
    let mut status = ReceiveSteering {
        requested,
        on: true,
        rps_cpus: Some(mask),
        rps_cpus_before: Some(rps_before),
        ..ReceiveSteering::default()
    };
    let backlog = std::fs::read_to_string(NETDEV_MAX_BACKLOG).map(|t| t.trim().to_owned()).unwrap_or_default();
    if backlog.parse::<u64>().is_ok_and(|b| b >= STEERED_BACKLOG) {
        status.netdev_max_backlog = Some(backlog);
    } else {
        match guard.set(Path::new(NETDEV_MAX_BACKLOG), &STEERED_BACKLOG.to_string()) {
            Ok(before) => {
                status.netdev_max_backlog = Some(STEERED_BACKLOG.to_string());
                status.netdev_max_backlog_before = Some(before);
            }
            Err(e) => {
                let why = format!("could not raise {NETDEV_MAX_BACKLOG} ({e}): packets may be dropped and resent");
                eprintln!("warning: --steer-receive: {why}");
                status.note = Some(why);
            }
        }
    }
    eprintln!(
        "note: {} (were {} and {})",
        status.describe(Some(core)),
        status.rps_cpus_before.as_deref().unwrap_or_default(),
        status.netdev_max_backlog_before.as_deref().unwrap_or("the same")
    );
    (status, Some(guard))
}

/// The `rps_cpus` bitmap of one CPU: hexadecimal, in comma-separated 32-bit words, most significant first.
fn cpu_mask(core: usize) -> String {
    let mut out = format!("{:x}", 1u32 << (core % 32));
    for _ in 0..core / 32 {
        out.push_str(",00000000");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_of_one_cpu() {
        let table = [(0, "1"), (1, "2"), (4, "10"), (31, "80000000"), (32, "1,00000000"), (65, "2,00000000,00000000")];
        for (core, want) in table {
            assert_eq!(cpu_mask(core), want, "core {core}");
        }
    }

    #[test]
    fn the_guard_puts_every_previous_value_back() {
        let dir = tempfile::tempdir().unwrap();
        let (rps, backlog) = (dir.path().join("rps_cpus"), dir.path().join("netdev_max_backlog"));
        std::fs::write(&rps, "0\n").unwrap();
        std::fs::write(&backlog, "1000\n").unwrap();
        let mut guard = Guard::default();
        assert_eq!(guard.set(&rps, "2").unwrap(), "0");
        assert_eq!(guard.set(&backlog, "262144").unwrap(), "1000");
        assert!(guard.set(&dir.path().join("missing"), "2").is_err());
        assert_eq!(std::fs::read_to_string(&rps).unwrap(), "2");
        drop(guard);
        assert_eq!(std::fs::read_to_string(&rps).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(&backlog).unwrap(), "1000");
    }

    #[test]
    fn is_off_unless_asked_and_possible() {
        let (status, guard) = steer(false, Some(1));
        assert!(!status.on && !status.requested && guard.is_none());
        let (status, guard) = steer(true, None);
        assert!(!status.on && status.requested && guard.is_none());
        assert!(status.note.unwrap().contains("pinned"));
    }
}
