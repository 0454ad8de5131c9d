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
        let (number, name) = split_stem(stem).ok_or_else(|| {
            PlanError::load(
                file,
                None,
                "playbook file names must look like NN.<step>.yml (e.g. 02.etcd.yml)",
            )
        })?;
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
                        _ => Err(PlanError::load(
                            file,
                            None,
                            "import entries are step numbers or names",
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            RawBody::Plays(plays) => {
                // Role references appear in file order: each is searched after the previous.
                let mut cursor = 0;
                Body::Plays(
                    plays
                        .into_iter()
                        .map(|p| Play {
                            hosts: match p.hosts {
                                OneOrMany::One(s) => s
                                    .split([',', ':'])
                                    .map(|g| g.trim().to_string())
                                    .filter(|g| !g.is_empty())
                                    .collect(),
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
                                    let origin = match role_line(text, &role, cursor) {
                                        Some(l) => {
                                            cursor = l;
                                            format!("{file}:{l}")
                                        }
                                        None => file.to_string(),
                                    };
                                    RoleRef { role, when, origin }
                                })
                                .collect(),
                        })
                        .collect(),
                )
            }
        };
        Ok(Playbook {
            step: stem.to_string(),
            number,
            name,
            file: file.to_string(),
            body,
        })
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
    let n = num
        .parse()
        .ok()
        .filter(|_| num.chars().all(|c| c.is_ascii_digit()))?;
    (!name.is_empty()).then(|| (n, name.to_string()))
}

/// The 1-based line naming role `role` at or after line `from` (1-based, 0 = start): a list
/// item `- role`, or `role`/`roles` keys mentioning it; comments and `hosts:` lines are skipped
/// (a group may share a role's name).
pub fn role_line(text: &str, role: &str, from: usize) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let has_word = |l: &str| {
        l.match_indices(role).any(|(i, _)| {
            !l[..i].chars().next_back().is_some_and(is_word)
                && !l[i + role.len()..].chars().next().is_some_and(is_word)
        })
    };
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let code = line.split(" #").next().unwrap_or("");
            let t = code.trim();
            if t.starts_with('#') || t.contains("hosts:") {
                return false;
            }
            let item = t
                .strip_prefix("- ")
                .map(|r| r.trim().trim_matches(['"', '\'']));
            item == Some(role)
                || t.split_once("role:").is_some_and(|(_, r)| has_word(r))
                || t.split_once("roles:").is_some_and(|(_, r)| has_word(r))
        })
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lines_skip_comments_and_group_names() {
        let text = "# chrony first\n- hosts: [etcd, chrony]\n  roles:\n    - { role: chrony, when: x }\n    - prepare\n- hosts: etcd\n  roles: [chrony]\n";
        let p = Playbook::parse("01.prepare", "p.yml", text).unwrap();
        let Body::Plays(plays) = &p.body else {
            panic!()
        };
        let origins: Vec<&str> = plays
            .iter()
            .flat_map(|p| &p.roles)
            .map(|r| r.origin.as_str())
            .collect();
        assert_eq!(origins, ["p.yml:4", "p.yml:5", "p.yml:7"]);
        assert_eq!(plays[0].hosts, ["etcd", "chrony"]);
    }

    #[test]
    fn import_lists_numbers_as_steps() {
        let p = Playbook::parse("90.all", "a.yml", "import: [01, 02, 10, etcd]\n").unwrap();
        let Body::Import(steps) = &p.body else {
            panic!()
        };
        assert_eq!(steps, &["01", "02", "10", "etcd"]);
    }

    #[test]
    fn unknown_play_key_is_refused_with_its_line() {
        let e = Playbook::parse(
            "02.etcd",
            "p.yml",
            "- hosts: etcd\n  become: true\n  roles: [etcd]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p.yml:2:") && e.contains("unknown field `become`"),
            "{e}"
        );
    }
}
