//! Where the machine's CPU goes during a benchmark step: the whole machine's busy time
//! (`/proc/stat`) and each test-environment process's (`/proc/<pid>/stat`), by component.
//!
//! On a machine this size the fanout's many-group step is bound by CPU, not by waiting: the
//! step cannot end sooner than its CPU work divided by the cores ([`CpuUse::floor`]). The
//! report shows that floor beside the wall time, so a target below it reads as what it is
//! (unreachable on this machine) rather than as a slow agent.
//!
//! Times are in clock ticks of `USER_HZ`, which Linux fixes at 100 on every mainstream
//! architecture (the kernel converts to it for `/proc`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::stats::fmt_latency;

/// Linux's `USER_HZ`, the unit of `/proc/stat` and `/proc/<pid>/stat` times.
const TICKS_PER_SECOND: f64 = 100.0;

/// The components a process is counted under, by a word of its command line (first match).
const COMPONENTS: [(&str, &str); 11] = [
    ("failover-storage-sim", "storage simulator"),
    ("failover-agent", "agents"),
    ("failoverctl", "failoverctl"),
    ("kube-apiserver", "kube-apiservers"),
    ("kube-controller-manager", "kube-controller-managers"),
    ("kube-scheduler", "kube-schedulers"),
    ("etcd", "etcd"),
    ("kwok", "kwok"),
    ("moto", "moto"),
    ("toxiproxy", "toxiproxy"),
    ("failover-bench", "benchmark probe"),
];

/// One reading of the machine and the processes.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    /// Busy CPU time of the whole machine (every core, idle and iowait excluded), in s.
    busy: f64,
    cores: usize,
    /// pid → (component, CPU time in s).
    procs: BTreeMap<u32, (&'static str, f64)>,
}

/// CPU use between two samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// Time between the samples.
    pub window: Duration,
    /// Cores of the machine.
    pub cores: usize,
    /// Busy CPU time of the whole machine in the window, in s.
    pub busy: f64,
    /// CPU time of each component in the window, in s (processes that ended within the
    /// window are missing: their time is in `busy` only).
    pub by_component: BTreeMap<&'static str, f64>,
}

impl CpuSample {
    /// Reads `/proc` now. `None` where `/proc` cannot be read (not Linux).
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (busy, cores) = parse_machine(&stat)?;
        let mut procs = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let (Ok(cmdline), Ok(stat)) = (
                std::fs::read(path.join("cmdline")),
                std::fs::read_to_string(path.join("stat")),
            ) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if let (Some(component), Some(cpu)) = (component_of(&cmdline), process_cpu(&stat)) {
                procs.insert(pid, (component, cpu));
            }
        }
        Some(Self {
            at: Instant::now(),
            busy,
            cores,
            procs,
        })
    }

    /// The use from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let mut by_component: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (pid, (component, cpu)) in &later.procs {
            // A process started within the window counts from zero.
            let before = match self.procs.get(pid) {
                Some((c, before)) if c == component => *before,
                _ => 0.0,
            };
            *by_component.entry(component).or_default() += (cpu - before).max(0.0);
        }
        CpuUse {
            window: later.at.saturating_duration_since(self.at),
            cores: later.cores,
            busy: (later.busy - self.busy).max(0.0),
            by_component,
        }
    }
}

impl CpuUse {
    /// Busy share of the machine over the window (0 to 1).
    pub fn busy_share(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let capacity = self.window.as_secs_f64() * self.cores.max(1) as f64;
        if capacity > 0.0 {
            (self.busy / capacity).min(1.0)
        } else {
            0.0
        }
    }

    /// The shortest time the window's CPU work could take on this machine's cores.
    pub fn floor(&self) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        let cores = self.cores.max(1) as f64;
        Duration::from_secs_f64(self.busy / cores)
    }

    /// `component 1.2 s, …`, largest first.
    pub fn components_cell(&self) -> String {
        let mut by: Vec<(&&str, &f64)> = self.by_component.iter().collect();
        by.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = String::new();
        for (i, (c, s)) in by.iter().filter(|(_, s)| **s >= 0.005).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{c} {s:.2} s");
        }
        out
    }

    /// `busy 12.3 CPU-s of 14.0 (88 %) → ≥ 6.2 s on 2 cores`.
    pub fn summary(&self) -> String {
        #[allow(clippy::cast_precision_loss)]
        let capacity = self.window.as_secs_f64() * self.cores.max(1) as f64;
        format!(
            "{:.1} CPU-s of {capacity:.1} ({:.0} %), so ≥ {} on {} cores",
            self.busy,
            self.busy_share() * 100.0,
            fmt_latency(self.floor()),
            self.cores
        )
    }
}

/// The component of a command line, if it is one the benchmarks run.
fn component_of(cmdline: &str) -> Option<&'static str> {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let program = words.first()?.rsplit('/').next().unwrap_or_default();
    COMPONENTS.iter().find_map(|(word, component)| {
        let named = if program.starts_with("python") {
            // moto runs as `python …/moto…py` or `python -m moto.server`.
            words.iter().skip(1).take(3).any(|w| w.contains(word))
        } else {
            program.contains(word)
        };
        named.then_some(*component)
    })
}

/// Busy time and core count from `/proc/stat` (the `cpu` line, and one `cpuN` per core).
fn parse_machine(stat: &str) -> Option<(f64, usize)> {
    let mut busy = None;
    let mut cores = 0;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is in user).
                let total: f64 = ticks.iter().take(8).sum();
                let idle =
                    ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
                busy = Some((total - idle) / TICKS_PER_SECOND);
            }
            Some(c) if c.starts_with("cpu") => cores += 1,
            _ => {}
        }
    }
    Some((busy?, cores.max(1)))
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in s.
fn process_cpu(stat: &str) -> Option<f64> {
    // The command may hold spaces and parentheses: fields count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state(3) … utime(14) stime(15), 1-based over the whole line.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_gives_busy_time_without_idle_and_iowait() {
        let stat = "cpu  1000 50 450 8000 500 0 0 0 0 0\ncpu0 500 25 225 4000 250 0 0 0 0 0\ncpu1 500 25 225 4000 250 0 0 0 0 0\nintr 1\n";
        let (busy, cores) = parse_machine(stat).unwrap();
        assert!((busy - 15.0).abs() < 1e-9, "{busy}");
        assert_eq!(cores, 2);
    }

    #[test]
    fn a_process_line_gives_user_plus_system_time_even_with_parentheses_in_its_name() {
        let stat = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 12 0 5 0 0";
        assert!((process_cpu(stat).unwrap() - 3.8).abs() < 1e-9);
    }

    #[test]
    fn command_lines_map_to_components() {
        let cases = [
            (
                "/cache/bin/kube-apiserver --etcd-servers=x",
                Some("kube-apiservers"),
            ),
            ("/cache/bin/etcd --data-dir d", Some("etcd")),
            (
                "/venv/bin/python3 /repo/tests/env/moto_linearizable.py -H 127.0.0.1",
                Some("moto"),
            ),
            (
                "/repo/target/release/failover-agent --cluster east",
                Some("agents"),
            ),
            (
                "/repo/target/release/failover-storage-sim --namespace n",
                Some("storage simulator"),
            ),
            ("/cache/bin/kwok --kubeconfig k", Some("kwok")),
            ("/usr/bin/python3 unrelated.py", None),
            ("bash -c make", None),
        ];
        for (cmdline, want) in cases {
            assert_eq!(component_of(cmdline), want, "{cmdline}");
        }
    }

    #[test]
    fn use_between_samples_counts_new_processes_from_zero_and_gives_the_floor() {
        let at = Instant::now();
        let before = CpuSample {
            at,
            busy: 100.0,
            cores: 2,
            procs: BTreeMap::from([(1, ("moto", 10.0)), (2, ("agents", 1.0))]),
        };
        let after = CpuSample {
            at: at + Duration::from_secs(10),
            busy: 118.0,
            cores: 2,
            procs: BTreeMap::from([
                (1, ("moto", 17.0)),
                (2, ("agents", 2.5)),
                (3, ("agents", 0.5)),
            ]),
        };
        let used = before.until(&after);
        assert_eq!(used.by_component["moto"], 7.0);
        assert_eq!(used.by_component["agents"], 2.0);
        assert!((used.busy_share() - 0.9).abs() < 1e-9);
        assert_eq!(used.floor(), Duration::from_secs(9));
        assert_eq!(used.components_cell(), "moto 7.00 s, agents 2.00 s");
    }
}
