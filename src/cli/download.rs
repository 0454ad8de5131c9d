//! `ezk download`: fill the artifact store (kubeasz's ezdown), from upstream, a mirror, a local
//! directory, or an offline bundle; or write such a bundle.

use std::path::PathBuf;
use std::sync::Arc;

use super::{CliResult, Context};
use crate::artifacts::download::{self, Options, Outcome, Status};
use crate::artifacts::{Manifest, Store, bundle, local, progress};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
STORE AND MIRROR LAYOUT
  <home>/down/files/<name>/<version>/<filename>   verified release files
  <home>/down/bin/<name>/<version>/<binary>       binaries extracted from them (+ SHA256SUMS)
  <home>/down/quarantine/                          files whose digest did not match (never used)
  A mirror is any HTTP(S) server laid out like down/files/: with --mirror URL, artifact
  <name> <version> is fetched from URL/<name>/<version>/<filename>, where <filename> is the last
  path segment of its upstream URL (e.g. URL/etcd/3.6.14/etcd-v3.6.14-linux-amd64.tar.gz).
  Serving a filled store's down/files/ directory makes a mirror.

EXAMPLES
  ezk download --k8s-ver v1.35.4                 all artifacts of that set
  ezk download --only etcd,containerd            only these artifacts (or binaries)
  ezk download --mirror https://mirror.internal/ezk
  ezk download --bundle ezk-artifacts.tar        then, on the offline machine:
  ezk download --import ezk-artifacts.tar        (every checksum re-verified)

LAB (no upstream access): the lab-debian set pins Debian bookworm's packages (the .deb sha256 from
Debian's signed Packages index, and the sha256 of each binary as shipped in it):
  mkdir debs && (cd debs && apt-get download etcd-server=3.4.23-4+b4 etcd-client=3.4.23-4+b4 \
      containerd=1.6.20~ds1-1+deb12u3 runc=1.1.5+ds1-1+deb12u1 \
      containernetworking-plugins=1.1.1+ds1-3+b5 kubernetes-client=1.20.5+really1.20.2-1.1+deb12u1)
  ezk download --k8s-ver lab-debian --from-local debs
or, where those exact packages are installed (not kubectl on machines with another kubectl):
  ezk download --k8s-ver lab-debian --from-local /
")]
pub struct Args {
    /// Version set to fetch (K8S_VER of config.yml, e.g. v1.35.4, or lab-debian). Default: the
    /// newest set of the shipped manifest.
    #[arg(long, value_name = "V")]
    pub k8s_ver: Option<String>,

    /// Fetch from a mirror laid out like the store: URL/<name>/<version>/<filename>.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,

    /// Only these artifacts (artifact or binary names, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub only: Vec<String>,

    /// Concurrent downloads.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,

    /// Take files from DIR instead of the network: DIR/<filename>, DIR/<name>/<version>/<filename>,
    /// or for Debian-packaged sets the installed files (DIR=/). Every file is verified.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["mirror", "bundle", "import"])]
    pub from_local: Option<PathBuf>,

    /// Write every verified artifact of the store into a tar for an offline machine.
    #[arg(long, value_name = "OUT.tar", conflicts_with_all = ["mirror", "import"])]
    pub bundle: Option<PathBuf>,

    /// Import a bundle made by --bundle; every checksum is re-verified, all or nothing.
    #[arg(long, value_name = "BUNDLE.tar", conflicts_with_all = ["mirror"])]
    pub import: Option<PathBuf>,

    /// List the version sets and their artifacts, with what is already in the store.
    #[arg(long, conflicts_with_all = ["mirror", "bundle", "import", "from_local"])]
    pub list: bool,

    /// Use this versions manifest instead of the shipped one (tests; `ezk setup` always uses
    /// the shipped manifest).
    #[arg(long, value_name = "FILE", hide = true)]
    pub manifest: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let store = match &args.manifest {
        Some(m) => Store::at(ctx.home.store_dir(), Manifest::load(m)?),
        None => Store::open(&ctx.home)?,
    };
    let k8s_ver = match &args.k8s_ver {
        Some(v) => v.clone(),
        None => store
            .manifest()
            .sets
            .keys()
            .next()
            .cloned()
            .ok_or("the versions manifest has no sets")?,
    };
    if args.list {
        return list(&store);
    }
    if let Some(b) = &args.import {
        let got = bundle::import_bundle(&store, b)?;
        println!(
            "imported {} artifacts from {} (all checksums verified)",
            got.len(),
            b.display()
        );
        return Ok(0);
    }
    if let Some(out) = &args.bundle {
        let got = bundle::write_bundle(&store, out)?;
        println!(
            "wrote {} with {} verified artifacts",
            out.display(),
            got.len()
        );
        return Ok(0);
    }
    let outcomes = if let Some(dir) = &args.from_local {
        local::fill_from_local(&store, &k8s_ver, &args.only, dir)?
    } else {
        let opts = Options {
            mirror: args.mirror.clone(),
            only: args.only.clone(),
            jobs: args.jobs,
            ..Options::default()
        };
        let (_, set) = store.manifest().set(&k8s_ver)?;
        let n = download::select(&k8s_ver, set, &opts.only)?.len();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()?;
        let store = Arc::new(store.clone());
        let progress: Arc<dyn progress::Progress> = Arc::from(progress::auto(n));
        rt.block_on(download::download_all(store, &k8s_ver, &opts, progress))?
    };
    Ok(report(&outcomes))
}

/// Summary lines; exit code 1 when anything failed.
fn report(outcomes: &[Outcome]) -> i32 {
    let mut failed = 0;
    for o in outcomes {
        match &o.result {
            Ok(Status::AlreadyVerified) => println!("{:<28} already verified", o.artifact),
            Ok(Status::Downloaded {
                bytes,
                resumed_from,
                ..
            }) if *resumed_from > 0 => {
                println!(
                    "{:<28} verified ({bytes} bytes, resumed at {resumed_from})",
                    o.artifact
                )
            }
            Ok(Status::Downloaded { .. }) => println!("{:<28} verified", o.artifact),
            Err(e) => {
                failed += 1;
                println!("{:<28} FAILED: {e}", o.artifact);
            }
        }
    }
    if failed > 0 {
        println!(
            "{failed} of {} artifacts failed; nothing unverified entered the store",
            outcomes.len()
        );
        1
    } else {
        0
    }
}

fn list(store: &Store) -> CliResult {
    for (set, vs) in &store.manifest().sets {
        println!("{set}:");
        for a in &vs.artifacts {
            let bins: Vec<&str> = a.binaries().into_iter().map(|(_, b)| b).collect();
            let state = if store.is_complete(a) {
                "in store"
            } else {
                "missing"
            };
            println!(
                "  {:<28} {:<22} {:<9} {}",
                a.name,
                a.version,
                state,
                bins.join(" ")
            );
        }
    }
    Ok(0)
}
