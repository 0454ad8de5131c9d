//! `ezk download`: fill the artifact store (kubeasz's ezdown), from upstream, a mirror, a local
//! directory, apt (the lab's pinned .debs), or an offline bundle; or write such a bundle. The
//! version set is the cluster's K8S_VER unless `--k8s-ver` names one. (The command, like the
//! other `cli/` files; `artifacts/download.rs` is the HTTP fetching it drives.)

use std::path::PathBuf;
use std::sync::Arc;

use super::{CliError, CliResult, Context};
use crate::artifacts::download::{self, Options, Outcome, Status};
use crate::artifacts::{ArtifactError, Manifest, Store, apt, bundle, catalog, local, progress, sha256sums};

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
STORE AND MIRROR LAYOUT
  <home>/down/files/<name>/<version>/<filename>   verified release files
  <home>/down/bin/<name>/<version>/<binary>       binaries extracted from them (+ SHA256SUMS)
  <home>/down/quarantine/                          files whose digest did not match (never used)
  <home>/down/images/<set>/<name>/, .tar, .json   container images: OCI layout, the archive
                                                  `ctr images import` reads, and its record
  A mirror is any HTTP(S) server laid out like down/files/: with --mirror URL, artifact
  <name> <version> is fetched from URL/<name>/<version>/<filename>, where <filename> is the last
  path segment of its upstream URL (e.g. URL/etcd/3.6.14/etcd-v3.6.14-linux-amd64.tar.gz).
  Serving a filled store's down/files/ directory makes a mirror.

IMAGES
  The set's container images pinned by digest (`images:` with a `digest` in the versions
  manifest) are fetched from their registries over the registry HTTP API: anonymous bearer
  tokens, the linux/amd64 manifest of a multi-platform index, every blob sha256-checked as it
  arrives (a mismatch is quarantined), resumed with Range after a cut. --only takes image names
  too. Images made from binaries (the lab's) are made by --from-apt. --bundle/--import carry
  fetched images (each re-checked against its pin on import) and make the others again. Every
  release's set names pause and CoreDNS at its minor's tags, and the step 07 add-ons' images
  (metrics-server, nodelocaldns, dashboard, dashboard-scraper) at the cluster-addon
  role's default versions; --list shows them. An image a minor has no published digest for
  (none today) is not fetched by tag instead: --list names it and says why.

EXAMPLES
  ezk download --k8s-ver v1.36.3                 all artifacts of that set
  ezk download --only etcd,containerd            only these artifacts (or binaries)
  ezk download --mirror https://mirror.internal/ezk
  ezk download --bundle ezk-artifacts.tar        then, on the offline machine:
  ezk download --import ezk-artifacts.tar        (every checksum re-verified)

LAB (no upstream access): the lab-debian set pins Debian bookworm's packages (the .deb sha256 from
Debian's signed Packages index, and the sha256 of each binary as shipped in it). One command
fetches them through apt (apt-get download) and verifies both pins:
  ezk download --k8s-ver lab-debian --from-apt
or from .deb files fetched by hand (apt-get download etcd-server=3.4.23-4+b4 ...):
  ezk download --k8s-ver lab-debian --from-local DIR
or, where those exact packages are installed (not kubectl on machines with another kubectl):
  ezk download --k8s-ver lab-debian --from-local /

WHICH SET: --k8s-ver V; else K8S_VER of CLUSTER (config.yml); else of the current cluster (see
`ezk checkout`); else, with no cluster, the manifest's first set. V is a release with or
without its v (1.31.2, v1.31.2). `ezk download --list` shows every release, 1.28 to 1.36,
each pinned by sha256 with its etcd, containerd, runc, CNI plugins, crictl, helm and calicoctl.

UNPINNED RELEASES: a few releases are known but have no published digests ezk could pin
(marked `unpinned` in --list). ezk refuses to guess; name the release's own checksum file and
ezk takes the six Kubernetes binaries' digests from it (the other artifacts keep the pins of
that minor), keeps them in down/pins/<release>.sha256 for later commands, and refuses any
downloaded binary that differs:
  ezk download --k8s-ver 1.35.8 --sha256sums https://dl.k8s.io/release/v1.35.8/SHA256SUMS
  ezk download --k8s-ver 1.35.8 --sha256sums ./SHA256SUMS        (a copy fetched elsewhere)
")]
pub struct Args {
    /// Cluster whose K8S_VER (config.yml) picks the version set (default: the current cluster).
    pub cluster: Option<String>,

    /// Version set to fetch (e.g. v1.36.3, or lab-debian); overrides the cluster's K8S_VER.
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

    /// Fetch the set's pinned .deb files with `apt-get download` (for lab-debian: the lab
    /// quickstart); each .deb and each binary in it is verified against its pin.
    #[arg(long, conflicts_with_all = ["mirror", "bundle", "import", "from_local"])]
    pub from_apt: bool,

    /// Write every verified artifact of the store into a tar for an offline machine.
    #[arg(long, value_name = "OUT.tar", conflicts_with_all = ["mirror", "import"])]
    pub bundle: Option<PathBuf>,

    /// Import a bundle made by --bundle; every checksum is re-verified, all or nothing.
    #[arg(long, value_name = "BUNDLE.tar", conflicts_with_all = ["mirror"])]
    pub import: Option<PathBuf>,

    /// List every Kubernetes release per minor version with what it installs, unpinned ones
    /// marked; with --k8s-ver or CLUSTER: that set's artifacts and what is in the store.
    #[arg(long, conflicts_with_all = ["mirror", "bundle", "import", "from_local", "from_apt", "sha256sums"])]
    pub list: bool,

    /// The release's own checksum file (URL, file:// URL or path), for a release this ezk has
    /// not pinned: the Kubernetes binaries' digests are taken from it (see UNPINNED RELEASES).
    #[arg(long, value_name = "URL|FILE", conflicts_with_all = ["bundle", "import", "from_apt"])]
    pub sha256sums: Option<String>,

    /// Use this versions manifest instead of the shipped one (tests; `ezk setup` always uses
    /// the shipped manifest).
    #[arg(long, value_name = "FILE", hide = true)]
    pub manifest: Option<PathBuf>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let mut store = match &args.manifest {
        Some(m) => Store::at(ctx.home.store_dir(), Manifest::load(m)?),
        None => Store::open(&ctx.home)?,
    };
    if args.list {
        let detail = args.k8s_ver.is_some() || args.cluster.is_some();
        if !detail {
            return list(&store);
        }
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
    let wanted = match wanted_set(ctx, &args, &store)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    if let Some(src) = &args.sha256sums {
        pin_from(&mut store, &wanted.ver, src)?;
    }
    let (set, _) = store.manifest().set(&wanted.ver).map_err(|e| match e {
        ArtifactError::UnknownVersion { .. } => format!("{e} ({}){}", wanted.why, wanted.fix),
        e => format!("{e} ({})", wanted.why),
    })?;
    println!("artifact set {set} ({})", wanted.why);
    let k8s_ver = set.to_string();
    if args.list {
        return list_set(&store, &k8s_ver);
    }
    let outcomes = if args.from_apt {
        let mut progress = |l: &str| eprintln!("{} {l}", console::style("build:").cyan());
        apt::fill_from_apt(&store, &k8s_ver, &args.only, &mut progress)?
    } else if let Some(dir) = &args.from_local {
        local::fill_from_local(&store, &k8s_ver, &args.only, dir)?
    } else {
        let opts = Options {
            mirror: args.mirror.clone(),
            only: args.only.clone(),
            jobs: args.jobs,
            ..Options::default()
        };
        let (_, set) = store.manifest().set(&k8s_ver)?;
        let (images, only) = download::split_images(set, &opts.only);
        let arts = if opts.only.is_empty() || !only.is_empty() {
            download::select(&k8s_ver, set, &only)?.len()
        } else {
            0
        };
        let n = arts + images.len();
        let store = Arc::new(store.clone());
        let progress: Arc<dyn progress::Progress> = Arc::from(progress::auto(n));
        runtime()?.block_on(download::download_all(store, &k8s_ver, &opts, progress))?
    };
    Ok(report(&outcomes))
}

/// The version the command is about, where that came from, and what to change when it names
/// no set.
struct Wanted {
    ver: String,
    why: String,
    fix: String,
}

/// `--k8s-ver`, else K8S_VER of the named or current cluster, else the manifest's first set.
/// `Err(code)` when the cluster's inventory does not load (its errors are printed).
fn wanted_set(ctx: &Context, args: &Args, store: &Store) -> Result<Result<Wanted, i32>, CliError> {
    if let Some(v) = &args.k8s_ver {
        return Ok(Ok(Wanted { ver: v.clone(), why: "--k8s-ver".into(), fix: String::new() }));
    }
    if let Some(cluster) = args.cluster.clone().or_else(|| ctx.home.current_cluster()) {
        let inv = match crate::ops::open_or_report(&ctx.home, &cluster, &[]) {
            Ok(session) => session.inventory,
            Err(code) => return Ok(Err(code)),
        };
        let config = inv.dir.join("config.yml");
        let ver = crate::session::k8s_ver(&inv).ok_or_else(|| {
            format!("cluster {cluster}: K8S_VER is not set in {}; set it there or pass --k8s-ver", config.display())
        })?;
        return Ok(Ok(Wanted {
            ver,
            why: format!("K8S_VER of cluster {cluster}"),
            fix: format!("; set K8S_VER in {} to one of them, or pass --k8s-ver", config.display()),
        }));
    }
    let first = store.manifest().sets.keys().next().cloned();
    let ver = first.ok_or("the versions manifest has no sets")?;
    Ok(Ok(Wanted { ver, why: "no cluster: the manifest's first set".into(), fix: String::new() }))
}

/// Read the checksum file `src`, take release `ver`'s Kubernetes digests from it and pin them
/// in the store (printed, with where they are kept).
fn pin_from(store: &mut Store, ver: &str, src: &str) -> Result<(), CliError> {
    let binaries = store
        .manifest()
        .kubernetes
        .as_ref()
        .map(|k| k.binaries.clone())
        .ok_or("this versions manifest has no catalog of Kubernetes releases to pin from")?;
    let text = runtime()?.block_on(sha256sums::read(src))?;
    let digests = sha256sums::kubernetes_digests(&text, &binaries, src)?;
    let was_unpinned = store.manifest().unpinned.contains_key(catalog::normalize(ver));
    let release = store.pin_release(ver, &digests, src)?;
    match store.manifest().sets[&release].pinned_from.as_deref() {
        _ if was_unpinned => {
            println!("pinned Kubernetes {release} from {src} (kept in {}):", store.dir().join("pins").join(format!("{release}.sha256")).display())
        }
        Some(from) => println!("{src} agrees with the pins of Kubernetes {release} you made from {from}:"),
        None => println!("{src} agrees with this ezk's pins of Kubernetes {release}:"),
    }
    for (bin, sha) in &digests {
        println!("  {bin:<24} sha256:{sha}");
    }
    Ok(())
}

/// The runtime for HTTP, made only by the commands that fetch.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?)
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
            Ok(Status::Built { secs, cached: true }) => println!(
                "{:<28} verified (from this machine's build cache, {secs:.1}s)",
                o.artifact
            ),
            Ok(Status::Built {
                secs,
                cached: false,
            }) => {
                println!("{:<28} verified (built here in {secs:.0}s)", o.artifact)
            }
            Ok(Status::Made { what }) => println!("{:<28} made {what}", o.artifact),
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

/// Every release per minor version, newest first, with what it installs besides Kubernetes and
/// which releases are complete in the store.
fn list(store: &Store) -> CliResult {
    let m = store.manifest();
    println!("Kubernetes releases (K8S_VER: \"1.31.2\" or \"v1.31.2\"), per minor version, with what each installs:");
    for line in m.by_minor() {
        let Some(newest) = line.pinned.last().or(line.unpinned.last()).or(Some(&line.minor)) else { continue };
        let companions: Vec<String> = m
            .companions(newest)
            .iter()
            .map(|a| format!("{} {}", a.name, a.version))
            .collect();
        match line.describe() {
            d if d == line.minor => println!("{}:", line.minor),
            d => println!("{}: {d}", line.minor),
        }
        println!("      {}", companions.join(", "));
        if let Some(minor) = m.minors.get(&line.minor) {
            let images: Vec<&str> = minor.images.iter().map(|i| i.reference.as_str()).collect();
            if !images.is_empty() {
                println!("      images, pinned by digest: {}", images.join(", "));
            }
            for (name, why) in &minor.images_unpinned {
                println!("      image {name}, no digest: {why}");
            }
        }
        let complete: Vec<&str> = m
            .sets
            .iter()
            .filter(|(k, _)| line.pinned.contains(k) || **k == line.minor)
            .filter(|(_, vs)| vs.artifacts.iter().all(|a| store.is_complete(a)))
            .map(|(k, _)| k.as_str())
            .collect();
        if !complete.is_empty() {
            println!("      in the store: {}", complete.join(", "));
        }
        for r in &line.pinned {
            if let Some(from) = m.sets[r].pinned_from.as_deref() {
                println!("      {r}: Kubernetes binaries pinned by you from {from}");
            }
        }
    }
    if let Some(addons) = m.kubernetes.as_ref().map(|k| &k.addon_images).filter(|a| !a.is_empty()) {
        println!("add-on images (step 07), pinned by digest, in every release's set:");
        for a in addons {
            println!("      {:<26} {} ({}'s default)", a.name, a.reference, a.var);
        }
    }
    if !m.unpinned.is_empty() {
        println!("unpinned: no published digests found; `ezk download --help` (UNPINNED RELEASES) says how to fetch one");
    }
    Ok(0)
}

/// One set's artifacts, with what is already in the store.
fn list_set(store: &Store, k8s_ver: &str) -> CliResult {
    let (set, vs) = store.manifest().set(k8s_ver)?;
    for a in &vs.artifacts {
        let bins: Vec<&str> = a.binaries().into_iter().map(|(_, b)| b).collect();
        let state = if store.is_complete(a) { "in store" } else { "missing" };
        println!("  {:<28} {:<22} {:<9} {}", a.name, a.version, state, bins.join(" "));
    }
    for i in &vs.images {
        let rec = crate::artifacts::oci::image(store, set, &i.name).ok().map(|l| l.record);
        let state = match (&i.digest, rec) {
            (Some(pin), Some(r)) if r.pinned.as_ref() == Some(pin) => "in store",
            (None, Some(_)) => "in store",
            _ => "missing",
        };
        let how = match &i.digest {
            Some(d) => format!("{}@{d}", i.reference),
            None => format!("{} (made here from binaries)", i.reference),
        };
        println!("  {:<28} {:<22} {:<9} {how}", format!("image {}", i.name), "", state);
    }
    for (name, why) in store.manifest().unpinned_images(set).into_iter().flatten() {
        println!("  {:<28} {:<22} {:<9} no digest: {why}", format!("image {name}"), "", "unpinned");
    }
    Ok(0)
}
