//! Download progress: one indicatif bar per file plus a total when stderr is a terminal,
//! plain lines otherwise (CI logs, pipes). Downloads report events; this owns the output.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Something that shows download progress. Implementations must be cheap to call per chunk.
pub trait Progress: Send + Sync {
    /// A file starts (or resumes at `already` bytes); `total` when the server said.
    fn start(&self, name: &str, total: Option<u64>, already: u64);
    /// `n` more bytes of `name` arrived.
    fn advance(&self, name: &str, n: u64);
    /// A plain note about `name` (retry, resume, skip).
    fn note(&self, name: &str, msg: &str);
    /// `name` is done: `ok` false on failure, with a one-line message.
    fn finish(&self, name: &str, ok: bool, msg: &str);
}

/// Pick bars on a terminal, lines otherwise.
pub fn auto(files: usize) -> Box<dyn Progress> {
    if console::Term::stderr().is_term() {
        Box::new(Bars::new(files))
    } else {
        Box::new(Lines)
    }
}

/// Plain lines on stderr, one per event that matters (no per-chunk output).
pub struct Lines;

impl Progress for Lines {
    fn start(&self, name: &str, total: Option<u64>, already: u64) {
        match (total, already) {
            (Some(t), 0) => eprintln!("download {name}: {t} bytes"),
            (Some(t), a) => eprintln!("download {name}: resuming at {a} of {t} bytes"),
            (None, _) => eprintln!("download {name}"),
        }
    }
    fn advance(&self, _: &str, _: u64) {}
    fn note(&self, name: &str, msg: &str) {
        eprintln!("{name}: {msg}");
    }
    fn finish(&self, name: &str, ok: bool, msg: &str) {
        eprintln!("{name}: {} {msg}", if ok { "ok" } else { "FAILED" });
    }
}

/// indicatif bars: one per file, plus a total in bytes across files.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl Bars {
    pub fn new(files: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        total.set_message(format!("total ({files} files)"));
        Bars {
            multi,
            total,
            bars: Mutex::new(Vec::new()),
        }
    }

    fn bar(&self, name: &str) -> Option<ProgressBar> {
        let bars = self.bars.lock().expect("progress lock");
        bars.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone())
    }
}

impl Progress for Bars {
    fn start(&self, name: &str, total: Option<u64>, already: u64) {
        let b = self
            .multi
            .insert_before(&self.total, ProgressBar::new(total.unwrap_or(0)));
        b.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:30}] {bytes}/{total_bytes}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_message(name.to_string());
        b.set_position(already);
        if let Some(t) = total {
            self.total.inc_length(t);
            self.total.inc(already);
        }
        self.bars
            .lock()
            .expect("progress lock")
            .push((name.to_string(), b));
    }
    fn advance(&self, name: &str, n: u64) {
        if let Some(b) = self.bar(name) {
            b.inc(n);
        }
        self.total.inc(n);
    }
    fn note(&self, name: &str, msg: &str) {
        let _ = self.multi.println(format!("{name}: {msg}"));
    }
    fn finish(&self, name: &str, ok: bool, msg: &str) {
        if let Some(b) = self.bar(name) {
            b.finish_with_message(format!("{name} {}", if ok { "ok" } else { "FAILED" }));
        }
        if !msg.is_empty() {
            let _ = self.multi.println(format!(
                "{name}: {} {msg}",
                if ok { "ok" } else { "FAILED" }
            ));
        }
    }
}

/// No output (tests, `--quiet`).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn note(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str, _: bool, _: &str) {}
}
