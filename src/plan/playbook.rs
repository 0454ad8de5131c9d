//! `playbooks/NN.<step>.yml`: which roles run on which groups (a list of plays), or, for
//! `90.all.yml`, `import: [01, 02, ...]` — other steps in order. Also step-name resolution:
//! `02`, `etcd`, `02.etcd` (and `all`) all name the same playbook.

use serde::Deserialize;

use super::error::PlanError;
use super::task::Arg;

/// A role named by a play, with its optional per-host `when`.
#[derive(Debug, Clone)]
pub struct RoleRef {
    pub role: String,
    pub when: Option<Arg>,
    /// `playbooks/NN.step.yml:LINE`, for messages.
    pub origin: String,
}

/// One play: roles applied to the hosts of some groups.
#[derive(Debug, Clone)]
pub struct Play {
    /// Group names; `all` means every host.
    pub hosts: Vec<String>,
    pub roles: Vec<RoleRef>,
}

/// What a playbook holds.
#[derive(Debug, Clone)]
pub enum Body {
    Plays(Vec<Play>),
    /// Other steps (by number or name), run in order.
    Import(Vec<String>),
}

/// A loaded playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// `02.etcd`.
    pub step: String,
    /// 2.
    pub number: u32,
    /// `etcd`.
    pub name: String,
    pub file: String,
    pub body: Body,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoleRef {
    role: String,
    #[serde(default)]
    when: Option<Arg>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRole {
    Name(String),
    Full(RawRoleRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    hosts: OneOrMany,
    roles: Vec<RawRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    import: Vec<Arg>,
}

enum RawBody {
    Plays(Vec<RawPlay>),
    Import(RawImport),
}

impl Playbook {
    /// Parse `playbooks/<stem>.yml`; `stem` must look like `NN.name`.
    pub fn parse(stem: &str, file: &str, text: &str) -> Result<Playbook, PlanError> {
        let (number, name) = split_stem(stem)
            .ok_or_else(|| PlanError::load(file, None, "playbook file names must look like NN.<step>.yml (e.g. 02.etcd.yml)"))?;
        // Pick the shape from the top-level node, then parse strictly for precise messages.
        let is_map = matches!(serde_yaml::from_str::<Arg>(text), Ok(Arg::Mapping(_)));
        let raw = if is_map {
            serde_yaml::from_str::<RawImport>(text).map(RawBody::Import)
        } else {
            serde_yaml::from_str::<Vec<RawPlay>>(text).map(RawBody::Plays)
        }
        .map_err(|e| {
            let mut err = PlanError::yaml(file, &e);
            if let PlanError::Load { msg, .. } = &mut err {
                msg.push_str(" (a playbook is a list of `{hosts: [groups], roles: [name | {role, when}]}`, or `import: [steps]`)");
            }
            err
        })?;
        let body = match raw {
            RawBody::Import(i) => Body::Import(
                i.import
                    .iter()
                    .map(|v| match v {
                        Arg::Number(n) => Ok(format!("{:02}", n.as_u64().unwrap_or(0))),
                        Arg::String(s) => Ok(s.clone()),
                        _ => Err(PlanError::load(file, None, "import entries are step numbers or names")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            RawBody::Plays(plays) => Body::Plays(
                plays
                    .into_iter()
                    .map(|p| Play {
                        hosts: match p.hosts {
                            OneOrMany::One(s) => s.split([',', ':']).map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect(),
                            OneOrMany::Many(v) => v,
                        },
                        roles: p
                            .roles
                            .into_iter()
                            .map(|r| {
                                let (role, when) = match r {
                                    RawRole::Name(n) => (n, None),
                                    RawRole::Full(f) => (f.role, f.when),
                                };
                                let origin = match line_of(text, &role) {
                                    Some(l) => format!("{file}:{l}"),
                                    None => file.to_string(),
                                };
                                RoleRef { role, when, origin }
                            })
                            .collect(),
                    })
                    .collect(),
            ),
        };
        Ok(Playbook { step: stem.to_string(), number, name, file: file.to_string(), body })
    }

    /// Does `query` (`02`, `2`, `etcd`, `02.etcd`) name this playbook?
    pub fn matches(&self, query: &str) -> bool {
        let q = query.trim().trim_end_matches(".yml");
        if q == self.step || q == self.name {
            return true;
        }
        q.parse::<u32>().is_ok_and(|n| n == self.number)
    }
}

fn split_stem(stem: &str) -> Option<(u32, String)> {
    let (num, name) = stem.split_once('.')?;
    let n = num.parse().ok().filter(|_| num.chars().all(|c| c.is_ascii_digit()))?;
    (!name.is_empty()).then(|| (n, name.to_string()))
}

/// First 1-based line where `word` appears as a whole word.
pub fn line_of(text: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text.lines().position(|l| {
        l.match_indices(word).any(|(i, _)| {
            let before = l[..i].chars().next_back();
            let after = l[i + word.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
    })
    .map(|i| i + 1)
}
