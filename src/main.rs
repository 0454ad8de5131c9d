//! The `ezk` binary: parse the command line, run it, turn any error into one report and an exit code.

fn main() {
    let cli = ezk::cli::parse();
    match ezk::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            ezk::ui::report_error(err.as_ref());
            std::process::exit(1);
        }
    }
}
