//! Task references (section 3 of the spec): `~:t`, `p:t`, `^:t`, `^~:t`, `[tag]:t`,
//! `[tag]~:t`, and on the command line a bare `t`.

use crate::workspace::{Workspace, check_name};

/// A parsed task reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// `~:t`: task `t` of the referring project.
    SameProject(String),
    /// `p:t`.
    Project(String, String),
    /// `^:t`: `t` in every project that has it.
    Every(String),
    /// `^~:t`: `t` in every other project that has it.
    EveryOther(String),
    /// `[tag]:t`, and with `except_self` `[tag]~:t`.
    Tagged {
        tag: String,
        task: String,
        except_self: bool,
    },
    /// A bare `t` (command line only).
    Bare(String),
}

/// A task's identity: `project:task` (ID-002). Orders by (project, task).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    pub project: String,
    pub task: String,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.project, self.task)
    }
}

/// The canonical text of a reference: what `parse` (or `parse_cli`) reads back.
impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskRef::SameProject(t) => write!(f, "~:{t}"),
            TaskRef::Project(p, t) => write!(f, "{p}:{t}"),
            TaskRef::Every(t) => write!(f, "^:{t}"),
            TaskRef::EveryOther(t) => write!(f, "^~:{t}"),
            TaskRef::Tagged {
                tag,
                task,
                except_self,
            } => write!(f, "[{tag}]{}:{task}", if *except_self { "~" } else { "" }),
            TaskRef::Bare(t) => write!(f, "{t}"),
        }
    }
}

fn name(n: &str, what: &str) -> Result<String, String> {
    check_name(n).map_err(|e| format!("bad {what} name `{n}`: {e}"))?;
    Ok(n.to_string())
}

impl TaskRef {
    /// Parses a reference as written in `deps` or `weak_deps`.
    pub fn parse(text: &str) -> Result<TaskRef, String> {
        let Some((scope, task)) = text.rsplit_once(':') else {
            return Err(
                "expected `project:task`, `~:task`, `^:task`, `^~:task` or `[tag]:task`".into(),
            );
        };
        let task = name(task, "task")?;
        Ok(match scope {
            "~" => TaskRef::SameProject(task),
            "^" => TaskRef::Every(task),
            "^~" => TaskRef::EveryOther(task),
            s if s.starts_with('[') => {
                let (tag, except_self) = match s.strip_suffix("]~") {
                    Some(t) => (t, true),
                    None => (
                        s.strip_suffix(']')
                            .ok_or("a tag selector is written `[tag]:task`")?,
                        false,
                    ),
                };
                TaskRef::Tagged {
                    tag: name(&tag[1..], "tag")?,
                    task,
                    except_self,
                }
            }
            p => TaskRef::Project(name(p, "project")?, task),
        })
    }

    /// Parses a reference given on the command line, where a bare `t` is allowed.
    pub fn parse_cli(text: &str) -> Result<TaskRef, String> {
        if text.contains(':') {
            Self::parse(text)
        } else {
            Ok(TaskRef::Bare(name(text, "task")?))
        }
    }

    /// Whether this reference must name exactly one existing task (a fan-out may match
    /// none).
    pub fn is_direct(&self) -> bool {
        matches!(self, TaskRef::SameProject(_) | TaskRef::Project(..))
    }

    /// The tasks this reference names, from the point of view of project `from`
    /// (`None` on the command line outside any project), in canonical order.
    pub fn resolve(&self, ws: &Workspace, from: Option<&str>) -> Vec<TaskId> {
        let id = |p: &str, t: &str| TaskId {
            project: p.to_string(),
            task: t.to_string(),
        };
        let having = |t: &str, keep: &dyn Fn(&crate::workspace::Project) -> bool| -> Vec<TaskId> {
            ws.projects
                .iter()
                .filter(|p| p.tasks.contains_key(t) && keep(p))
                .map(|p| id(&p.name, t))
                .collect()
        };
        match self {
            TaskRef::SameProject(t) => from
                .and_then(|p| ws.project(p))
                .filter(|p| p.tasks.contains_key(t))
                .map(|p| vec![id(&p.name, t)])
                .unwrap_or_default(),
            TaskRef::Project(p, t) => ws
                .project(p)
                .filter(|p| p.tasks.contains_key(t))
                .map(|p| vec![id(&p.name, t)])
                .unwrap_or_default(),
            TaskRef::Every(t) => having(t, &|_| true),
            TaskRef::EveryOther(t) => having(t, &|p| Some(p.name.as_str()) != from),
            TaskRef::Tagged {
                tag,
                task,
                except_self,
            } => having(task, &|p| {
                p.tags.contains(tag) && !(*except_self && Some(p.name.as_str()) == from)
            }),
            TaskRef::Bare(t) => match from.and_then(|p| ws.project(p)) {
                Some(p) if p.tasks.contains_key(t) => vec![id(&p.name, t)],
                Some(_) => Vec::new(),
                None => having(t, &|_| true),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            TaskRef::parse("~:build"),
            Ok(TaskRef::SameProject("build".into()))
        );
        assert_eq!(
            TaskRef::parse("web:build"),
            Ok(TaskRef::Project("web".into(), "build".into()))
        );
        assert_eq!(
            TaskRef::parse("^:build"),
            Ok(TaskRef::Every("build".into()))
        );
        assert_eq!(
            TaskRef::parse("^~:build"),
            Ok(TaskRef::EveryOther("build".into()))
        );
        assert_eq!(
            TaskRef::parse("[lib]~:build"),
            Ok(TaskRef::Tagged {
                tag: "lib".into(),
                task: "build".into(),
                except_self: true
            })
        );
        assert_eq!(
            TaskRef::parse("[lib]:build"),
            Ok(TaskRef::Tagged {
                tag: "lib".into(),
                task: "build".into(),
                except_self: false
            })
        );
        assert_eq!(
            TaskRef::parse_cli("build"),
            Ok(TaskRef::Bare("build".into()))
        );
    }

    #[test]
    fn display_reads_back() {
        for text in ["~:t", "p:t", "^:t", "^~:t", "[web]:t", "[web]~:t"] {
            let r = TaskRef::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(TaskRef::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in ["build", ":build", "web:", "[lib:build", "we b:x", "~:a.b"] {
            assert!(TaskRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
