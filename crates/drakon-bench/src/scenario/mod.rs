//! The scenarios, and what they share: the run's context (binaries, cores, receive steering, source addresses) and
//! the way a finished scenario is reported.

mod fanout;
mod idle;
mod nodes;
mod presence;
mod selective;
mod users;
mod writes;

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Common;
use crate::fleet::Layout;
use crate::procfs;
use crate::report::{self, Comparison, Machine, Report, Step, Table};
use crate::steer;
use crate::svg::Chart;
use crate::target::{Kind, Launch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Idle,
    Fanout,
    Writes,
    Selective,
    Nodes,
    Users,
    Presence,
}

impl Name {
    /// What `all` runs: `nodes` is left out (it needs Redis and most of the machine's memory for minutes), and so are
    /// `users` (10,000 signed-in connections, twice, for a question of its own) and `presence` (rooms up to 10,000).
    pub const ALL: [Name; 4] = [Name::Idle, Name::Fanout, Name::Writes, Name::Selective];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::Idle => "idle",
            Name::Fanout => "fanout",
            Name::Writes => "writes",
            Name::Selective => "selective",
            Name::Nodes => "nodes",
            Name::Users => "users",
            Name::Presence => "presence",
        }
    }
}

/// Runs one scenario and returns its tables as text, for the summary of `all`.
pub async fn run(ctx: &Context, name: Name) -> Result<String> {
    println!("\n==> {}", name.as_str());
    match name {
        Name::Idle => idle::run(ctx).await,
        Name::Fanout => fanout::run(ctx).await,
        Name::Writes => writes::run(ctx).await,
        Name::Selective => selective::run(ctx).await,
        Name::Nodes => nodes::run(ctx).await,
        Name::Users => users::run(ctx).await,
        Name::Presence => presence::run(ctx).await,
    }
}

/// Everything that holds for the whole run.
#[derive(Debug)]
pub struct Context {
    pub common: Common,
    pub launch: Launch,
    pub machine: Machine,
    generator_core: Option<usize>,
    baseline: Option<String>,
    octet: Cell<u8>,
    /// Held for the whole run: dropping the context undoes receive steering.
    _steering: Option<steer::Guard>,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

impl Context {
    pub fn new(common: Common) -> Result<Context> {
        let open_files = procfs::raise_open_files();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = !common.no_pin && cpus >= 2 && on_path("taskset");
        let (server_core, generator_core) = if pin { (Some(0), Some(1)) } else { (None, None) };
        if let Some(core) = generator_core {
            // The controller (publisher, writers) runs with the workers, away from the server's core.
            let mut set = rustix::thread::CpuSet::new();
            set.set(core);
            if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
                eprintln!("warning: could not pin the controller to core {core}: {e}");
            }
        }
        if !common.server.is_file() {
            bail!(
                "no drakon binary at {}: build it with `cargo build --release -p drakon`, or pass --server",
                common.server.display()
            );
        }
        let baseline = if common.no_baseline {
            None
        } else if !on_path("node") {
            eprintln!("warning: `node` is not installed: the baseline is skipped (bench/run.sh installs it)");
            None
        } else if !common.baseline.is_file() {
            eprintln!("warning: no baseline at {}: skipped", common.baseline.display());
            None
        } else if !common.baseline.parent().unwrap_or(Path::new(".")).join("node_modules/ws").is_dir() {
            eprintln!(
                "warning: the baseline's `ws` package is missing: run `npm ci` in {}; the baseline is skipped",
                common.baseline.parent().unwrap_or(Path::new(".")).display()
            );
            None
        } else {
            Some(common.baseline.display().to_string())
        };
        if open_files < 20_000 {
            eprintln!("note: this process may open {open_files} files; big steps need more workers (--processes)");
        }
        let floor = if common.no_floor {
            None
        } else {
            // The floor is this executable's `floor-server` subcommand.
            std::env::current_exe()
                .inspect_err(|e| eprintln!("warning: cannot find this executable ({e}): the floor is skipped"))
                .ok()
        };
        let launch =
            Launch { drakon: common.server.clone(), baseline: baseline.as_ref().map(Into::into), floor, server_core };
        if !pin {
            eprintln!("note: server and generator are not pinned to separate cores (needs 2 cores and `taskset`)");
        }
        let (receive_steering, steering) = steer::steer(common.steer_receive, generator_core);
        let machine = Machine {
            cpus,
            open_files_limit: open_files,
            server_core,
            generator_core,
            pinned_with: pin.then_some("taskset"),
            receive_steering,
        };
        // Successive runs start on different source addresses (one more every 5 s), so that a run rarely meets the
        // TIME_WAIT ports of the one before.
        let first_octet = 1 + (crate::stamp::now_micros() / 5_000_000 % 250) as u8;
        Ok(Context {
            common,
            launch,
            machine,
            generator_core,
            baseline,
            octet: Cell::new(first_octet),
            _steering: steering,
        })
    }

    /// The servers a scenario with a baseline equivalent measures: drakon first, then the Node baseline and the
    /// floor.
    pub fn targets(&self) -> Vec<Kind> {
        let mut out = vec![Kind::Drakon];
        if self.baseline.is_some() {
            out.push(Kind::NodeWs);
        }
        if self.launch.floor.is_some() {
            out.push(Kind::Floor);
        }
        out
    }

    /// How the run was set up, in one line: cores and receive steering.
    pub fn setup(&self) -> String {
        let pinning = match (self.machine.server_core, self.machine.generator_core) {
            (Some(s), Some(g)) => format!("server on core {s}, generator on core {g}"),
            _ => "not pinned".to_owned(),
        };
        format!(
            "{} CPUs, {pinning}, {}",
            self.machine.cpus,
            self.machine.receive_steering.describe(self.machine.generator_core)
        )
    }

    /// A fleet layout on fresh source addresses.
    pub fn layout(&self) -> Layout {
        let octet = self.octet.get();
        self.octet.set(if octet >= 250 { 1 } else { octet + 1 });
        Layout {
            processes: self.common.processes,
            core: self.generator_core,
            octet,
            deadline: Duration::from_secs(self.common.time_limit),
            concurrency: self.common.concurrency.max(1),
        }
    }

    pub fn bar(&self, prefix: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_prefix(prefix.to_owned());
        bar.set_style(ProgressStyle::with_template("  {prefix:>8} {msg}").expect("valid template"));
        bar
    }

    pub fn duration(&self, default: f64) -> Duration {
        Duration::from_secs_f64(self.common.duration.unwrap_or(default).max(0.1))
    }

    /// Prints the tables, writes the JSON and the SVG, and returns the tables as text.
    pub fn finish(
        &self,
        name: Name,
        settings: serde_json::Value,
        steps: Vec<Step>,
        comparison: Vec<Comparison>,
        mut tables: Vec<Table>,
        charts: &[Chart],
    ) -> Result<String> {
        if !comparison.is_empty() {
            tables.push(report::comparison_table(&comparison));
        }
        let mut text = format!("\nsetup: {}\n", self.setup());
        text.extend(tables.iter().map(Table::render));
        for s in &steps {
            for note in &s.notes {
                text.push_str(&format!("note ({} {} conns): {note}\n", s.target, s.connections));
            }
        }
        print!("{text}");
        let stem = match &self.common.tag {
            Some(tag) => format!("{}-{tag}", name.as_str()),
            None => name.as_str().to_owned(),
        };
        let report = Report {
            scenario: name.as_str().to_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            unix_time: crate::stamp::now_micros() / 1_000_000,
            machine: self.machine.clone(),
            settings,
            steps,
            comparison,
        };
        let subtitle = format!("{}; {}", self.setup(), report.command);
        let svg = crate::svg::render(&format!("drakon-bench: {}", name.as_str()), &subtitle, charts);
        let (json, chart) = report::write(&self.common.out, &stem, &report, &svg)?;
        println!("\nwrote {} and {}", json.display(), chart.display());
        Ok(text)
    }
}

/// CPU time of the controller (this process) so far, in seconds.
pub fn own_cpu() -> Result<f64> {
    Ok(procfs::cpu_time(None)?.as_secs_f64())
}

/// CPU the whole machine has used so far, in seconds.
pub fn machine_cpu() -> Result<f64> {
    Ok(procfs::machine_busy()?.as_secs_f64())
}

/// What else ran during a window: machine CPU minus the server's and the generator's, never below zero; with a
/// note when it is large enough to disturb the figures.
pub fn other_cpu(machine_secs: f64, server_secs: f64, generator_secs: f64, window_secs: f64) -> (f64, Option<String>) {
    let other = (machine_secs - server_secs - generator_secs).max(0.0);
    let note = (other > 0.1 * window_secs.max(0.1)).then(|| {
        format!(
            "other processes used {other:.1} s of CPU during this {window_secs:.1} s window: another job shared the \
             cores, or (near saturation) the kernel's ksoftirqd threads took over loopback network work"
        )
    });
    (other, note)
}

/// Microseconds of `cpu_secs` per `count`, when anything was counted.
pub fn per(cpu_secs: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| cpu_secs * 1e6 / count as f64)
}

/// Publishes on `channel` at `rate` for `duration` (100-byte-ish stamped payloads of `payload` bytes), showing
/// progress and the deliveries the fleet counts meanwhile on `bar`.
pub async fn publish_counting(
    bar: &ProgressBar,
    publisher: &mut crate::publish::Publisher,
    fleet: &mut crate::fleet::Fleet,
    channel: &str,
    rate: f64,
    duration: Duration,
    payload: usize,
) -> Result<crate::publish::Published> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    bar.set_length(total);
    bar.set_position(0);
    bar.set_style(
        ProgressStyle::with_template("  {prefix:>8} publishing {bar:30} {pos:>6}/{len:6} msgs {msg}")
            .expect("valid template"),
    );
    let progress = bar.clone();
    let run = publisher.run(channel, rate, duration, payload, move |sent| progress.set_position(sent));
    tokio::pin!(run);
    loop {
        tokio::select! {
            done = &mut run => return done,
            delivered = fleet.deliveries(Duration::from_millis(500)) => {
                bar.set_message(format!("{} delivered", delivered?));
            }
        }
    }
}

/// The figures of a broadcast step (`fanout`, `nodes`): `n` connections asked for, `ready` once connected,
/// `published` at `rate`, `counted` by the fleet, and the CPU the servers and the generator spent meanwhile. Notes
/// say how the first connection failed or closed, if any did.
#[allow(clippy::too_many_arguments)]
pub fn broadcast_step(
    target: &str,
    n: usize,
    ready: &crate::fleet::Ready,
    rate: f64,
    published: &crate::publish::Published,
    counted: &crate::fleet::Counted,
    server_cpu: f64,
    generator_cpu: f64,
) -> Step {
    let expected = published.ok * ready.connected as u64;
    let delivered = counted.stamped;
    let mut notes = Vec::new();
    if let Some(e) = &ready.first_error {
        notes.push(format!("first connection error: {e}"));
    }
    if let Some(c) = &counted.first_close {
        notes.push(format!("first close during the run: {c}"));
    }
    Step {
        rate: Some(rate),
        duration_secs: Some(published.secs),
        published: Some(published.ok),
        publish_failed: Some(published.failed),
        expected: Some(expected),
        delivered: Some(delivered),
        losses: Some(expected.saturating_sub(delivered)),
        closed_connections: Some(counted.closed),
        deliveries_per_sec: Some(delivered as f64 / published.secs.max(1e-9)),
        latency: report::Latency::of(&counted.latency),
        server_cpu_secs: Some(server_cpu),
        generator_cpu_secs: Some(generator_cpu),
        server_cpu_us_per_delivery: per(server_cpu, delivered),
        generator_cpu_us_per_delivery: per(generator_cpu, delivered),
        notes,
        ..ready.step(target, n)
    }
}

/// What one measured window of writes did: the writes, what the fleet received, and the CPU each side used.
pub struct Measured {
    pub written: crate::verbs::Written,
    pub counted: crate::fleet::Counted,
    pub server_cpu: f64,
    pub generator_cpu: f64,
    pub other_cpu: f64,
    pub notes: Vec<String>,
}

/// Sends `rate` writes a second for `duration` from `plan`'s schedule over `writers` connections while
/// `fleet` counts deliveries (counted afresh from here), waits for the expected deliveries, and measures the
/// server's and the generator's CPU over the window.
pub async fn measure_writes(
    writers: usize,
    target: &mut crate::target::Target,
    fleet: &mut crate::fleet::Fleet,
    plan: &(dyn Fn(u64, u64) -> crate::verbs::Planned + Sync),
    rate: f64,
    duration: Duration,
    bar: &ProgressBar,
) -> Result<Measured> {
    const QUIET: Duration = Duration::from_secs(2);
    const DRAIN_LIMIT: Duration = Duration::from_secs(30);
    fleet.start().await?;
    let server_cpu0 = target.cpu()?;
    let own0 = own_cpu()?;
    let machine0 = machine_cpu()?;
    let window = std::time::Instant::now();
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    bar.set_length(total);
    bar.set_position(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {prefix:>8} writing {bar:30} {pos:>6}/{len:6} writes")
            .expect("valid template"),
    );
    let progress = bar.clone();
    let on_tick = move |k| progress.set_position(k);
    let written = {
        let run = crate::verbs::run_writes(target.addr, writers, rate, duration, plan, &on_tick);
        tokio::pin!(run);
        loop {
            tokio::select! {
                done = &mut run => break done?,
                delivered = fleet.deliveries(Duration::from_millis(500)) => { delivered?; }
            }
        }
    };
    fleet.drain(written.expected_deliveries, QUIET, DRAIN_LIMIT).await?;
    let server_cpu = target.cpu()?.saturating_sub(server_cpu0).as_secs_f64();
    let own = own_cpu()? - own0;
    let machine = machine_cpu()? - machine0;
    let window = window.elapsed().as_secs_f64();
    let counted = fleet.report().await?;
    target.check_alive()?;
    let generator_cpu = counted.cpu_secs + own;
    let mut notes = Vec::new();
    let (other_cpu, disturbed) = other_cpu(machine, server_cpu, generator_cpu, window);
    notes.extend(disturbed);
    if let Some(e) = &written.first_error {
        notes.push(format!("first failed write: {e}"));
    }
    if let Some(c) = &counted.first_close {
        notes.push(format!("first close during the run: {c}"));
    }
    if counted.stamped > written.expected_deliveries {
        notes.push(format!("{} deliveries beyond the expected ones", counted.stamped - written.expected_deliveries));
    }
    Ok(Measured { written, counted, server_cpu, generator_cpu, other_cpu, notes })
}

impl Measured {
    /// The step's write and delivery figures, over `base` (the connection figures).
    pub fn step(&self, rate: f64, base: Step) -> Step {
        let (written, delivered) = (&self.written, self.counted.stamped);
        Step {
            rate: Some(rate),
            duration_secs: Some(written.secs),
            writes_ok: Some(written.ok),
            writes_failed: Some(written.failed),
            writes_per_sec: Some(written.ok as f64 / written.secs.max(1e-9)),
            expected: Some(written.expected_deliveries),
            delivered: Some(delivered),
            losses: Some(written.expected_deliveries.saturating_sub(delivered)),
            closed_connections: Some(self.counted.closed),
            deliveries_per_sec: Some(delivered as f64 / written.secs.max(1e-9)),
            latency: report::Latency::of(&self.counted.latency),
            reply_latency: report::Latency::of(&written.reply_latency),
            server_cpu_secs: Some(self.server_cpu),
            generator_cpu_secs: Some(self.generator_cpu),
            server_cpu_us_per_write: per(self.server_cpu, written.ok),
            server_cpu_us_per_delivery: per(self.server_cpu, delivered),
            generator_cpu_us_per_delivery: per(self.generator_cpu, delivered),
            other_cpu_secs: Some(self.other_cpu),
            notes: self.notes.clone(),
            ..base
        }
    }
}
