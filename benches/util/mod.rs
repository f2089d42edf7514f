//! Latency statistics and the table the benchmarks print.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// One measured scenario.
pub struct Row {
    pub name: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub calls_per_sec: f64,
}

impl Row {
    pub fn from_samples(name: &str, mut samples: Vec<Duration>, wall: Duration) -> Row {
        samples.sort_unstable();
        let pick = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i].as_secs_f64() * 1e6
        };
        Row {
            name: name.to_string(),
            p50_us: pick(0.5),
            p99_us: pick(0.99),
            p999_us: pick(0.999),
            calls_per_sec: samples.len() as f64 / wall.as_secs_f64(),
        }
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"name\":{:?},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"calls_per_sec\":{:.0}}}",
            self.name, self.p50_us, self.p99_us, self.p999_us, self.calls_per_sec
        )
    }
}

/// Times `n` sequential runs of `f` after `warm` unmeasured ones.
pub fn sequential(name: &str, warm: usize, n: usize, mut f: impl FnMut()) -> Row {
    for _ in 0..warm {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    Row::from_samples(name, samples, start.elapsed())
}

/// Runs `f` from `threads` threads at once, `n` times in all.
pub fn concurrent(name: &str, threads: usize, n: usize, f: impl Fn() + Sync) -> Row {
    let per = n / threads;
    let start = Instant::now();
    let samples: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut v = Vec::with_capacity(per);
                    for _ in 0..per {
                        let t = Instant::now();
                        f();
                        v.push(t.elapsed());
                    }
                    v
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    Row::from_samples(name, samples, start.elapsed())
}

pub fn print_table(title: &str, rows: &[Row], floor: &str) {
    let base = rows.iter().find(|r| r.name == floor);
    let (base50, base99) = base.map(|r| (r.p50_us, r.p99_us)).unwrap_or((1.0, 1.0));
    println!("\n{title}");
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "scenario", "p50 µs", "p99 µs", "p99.9 µs", "calls/s", "p50/floor", "p99/p50", "p99/floor"
    );
    for r in rows {
        println!(
            "{:<46} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
            r.name,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.calls_per_sec,
            r.p50_us / base50,
            r.p99_us / r.p50_us,
            r.p99_us / base99
        );
    }
    println!("(p99/floor: the row's p99 over the floor's p99, the tail beside the floor's tail)");
}

pub fn write_json(file: &str, rows: &[Row], extra: &[(&str, String)]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let mut s = String::from("{\"rows\":[");
    s.push_str(&rows.iter().map(Row::json).collect::<Vec<_>>().join(","));
    s.push(']');
    for (k, v) in extra {
        s.push_str(&format!(",{k:?}:{v}"));
    }
    s.push('}');
    let path = dir.join(file);
    std::fs::write(&path, s).expect("write bench json");
    println!("(written to {})", path.display());
}

/// Number of iterations, scaled by WSPR_BENCH_SCALE (default 1.0).
pub fn iters(n: usize) -> usize {
    let scale: f64 = std::env::var("WSPR_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(64)
}

/// Runs several sequential scenarios in interleaved rounds, so that each
/// sees the machine in the same states (this VM's wakeup latency drifts).
pub fn interleaved(
    rounds: usize,
    n: usize,
    scenarios: &mut [(&str, &mut dyn FnMut())],
) -> Vec<Row> {
    let per = (n / rounds).max(1);
    let mut samples: Vec<Vec<Duration>> = scenarios.iter().map(|_| Vec::with_capacity(n)).collect();
    let mut walls = vec![Duration::ZERO; scenarios.len()];
    for (_, f) in scenarios.iter_mut() {
        for _ in 0..200 {
            f();
        }
    }
    for _ in 0..rounds {
        for (i, (_, f)) in scenarios.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..per {
                let t = Instant::now();
                f();
                samples[i].push(t.elapsed());
            }
            walls[i] += start.elapsed();
        }
    }
    scenarios
        .iter()
        .zip(samples)
        .zip(walls)
        .map(|(((name, _), s), w)| Row::from_samples(name, s, w))
        .collect()
}

/// A process's resident set size, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A process's CPU time, seconds: the scheduler's run time of each of its
/// threads (`/proc/PID/task/*/schedstat`, nanoseconds), summed. Not
/// utime + stime of `/proc/PID/stat`: with this kernel's tick accounting
/// (`CONFIG_TICK_CPU_ACCOUNTING`, 250 Hz) those charge a whole 4 ms tick to
/// whichever thread runs when it fires, so a couple of seconds of CPU read
/// that way move by several per cent from run to run. (A thread that ends
/// between two readings takes its time with it: the benches read it over
/// phases in which the daemon's threads stay.)
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}
