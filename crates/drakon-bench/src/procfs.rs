//! What the kernel says a process costs: CPU time from `/proc/<pid>/stat`, resident memory from
//! `/proc/<pid>/status`. Linux only, like the benchmark itself.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: Option<u32>) -> Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok(ticks_to_duration(ticks))
}

/// utime + stime, in clock ticks, from the text of a `stat` file.
fn parse_stat_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    let Some(close) = stat.rfind(')') else { bail!("no ')' in stat") };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let get =
        |i: usize| -> Result<u64> { fields.get(i).context("stat too short")?.parse::<u64>().context("not a number") };
    Ok(get(11)? + get(12)?)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_micros(ticks.saturating_mul(1_000_000) / hz)
}

/// CPU time every process of the machine has used so far (user, nice and system over all CPUs), from `/proc/stat`.
/// Minus the server's and the generator's, it tells how much else ran during a measurement.
pub fn machine_busy() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks = parse_machine_busy(&text).context("no cpu line in /proc/stat")?;
    Ok(ticks_to_duration(ticks))
}

fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal: only the first three, the time processes are charged. The
    // kernel's interrupt work (on loopback, most of the receiving side of TCP) is left out because a process's
    // own figure in /proc/<pid>/stat leaves it out too.
    Some(v.iter().take(3).sum())
}

/// A machine-wide TCP counter from `/proc/net/netstat` (e.g. `ListenOverflows`: connections dropped because a
/// listener's accept queue was full; the client retries its SYN a second later).
pub fn tcp_ext(name: &str) -> Option<u64> {
    parse_tcp_ext(&std::fs::read_to_string("/proc/net/netstat").ok()?, name)
}

fn parse_tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Packets the kernel dropped, over all CPUs, because a CPU's receive backlog was full (`net.core.netdev_max_backlog`),
/// from the second column of `/proc/net/softnet_stat`. Loopback queues there only when its receive work is steered to
/// another CPU (`--steer-receive`); TCP then retransmits, at least 200 ms later.
pub fn backlog_drops() -> Option<u64> {
    parse_softnet_drops(&std::fs::read_to_string("/proc/net/softnet_stat").ok()?)
}

fn parse_softnet_drops(softnet: &str) -> Option<u64> {
    softnet.lines().map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()).sum()
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Raises the soft open-file limit to the hard one: each connection is a file, and children (the server under test,
/// the workers) inherit the raised limit.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum });
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_a_hostile_command_name() {
        let stat = "4242 (drakon (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat).unwrap(), 325);
        assert!(parse_stat_ticks("garbage").is_err());
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tdrakon\nVmPeak:\t  10 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(20480 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_machine_busy_time() {
        let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 50 2 25 4500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(155));
        assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
    }

    #[test]
    fn reads_tcp_counters() {
        let netstat =
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 644 650\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_tcp_ext(netstat, "ListenOverflows"), Some(644));
        assert_eq!(parse_tcp_ext(netstat, "Nope"), None);
    }

    #[test]
    fn reads_backlog_drops_of_every_cpu() {
        let softnet = "08b94ae2 000021b2 00000001 00000000\n0595be40 00054665 00000000 00000000\n";
        assert_eq!(parse_softnet_drops(softnet), Some(0x21b2 + 0x54665));
        assert_eq!(parse_softnet_drops("08b94ae2\n"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
        assert!(cpu_time(None).is_ok());
    }
}
