//! Release tasks and their dependency graph. A release's tasks come from its template's phases
//! and may be added to; they form a DAG, and a task cannot start before its predecessors are
//! done (or skipped).

use crate::validate::Invalid;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Manual,
    Approval,
    Gate,
    Deploy,
    WaitForWindow,
    Notification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Done,
    Skipped,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Failed => "failed",
        }
    }
    /// A predecessor in one of these states no longer holds its successors back.
    pub fn releases_successors(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Skipped)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Unique within the release, e.g. `smoke-tests`.
    pub key: String,
    pub phase: String,
    pub name: String,
    pub kind: TaskKind,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    /// Role expected to do the task when nobody is assigned yet (e.g. `sre`).
    #[serde(default)]
    pub assignee_role: Option<String>,
    pub status: TaskStatus,
    #[serde(default)]
    pub note: Option<String>,
    /// The release cannot be closed until this task is done (e.g. the post-facto review a
    /// break-glass creates).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocks_close: bool,
}

impl Task {
    pub fn new(key: &str, phase: &str, name: &str, kind: TaskKind, depends_on: Vec<&str>) -> Task {
        Task {
            key: key.into(),
            phase: phase.into(),
            name: name.into(),
            kind,
            depends_on: depends_on.into_iter().map(String::from).collect(),
            assignee: None,
            assignee_role: None,
            status: TaskStatus::Pending,
            note: None,
            blocks_close: false,
        }
    }
}

/// Checks that task keys are unique, every dependency names an existing task, and the graph
/// has no cycle (naming the tasks on it).
pub fn validate_dag(tasks: &[Task], field: &str) -> Result<(), Invalid> {
    let mut errors = Invalid::default();
    let mut keys = BTreeSet::new();
    for (i, t) in tasks.iter().enumerate() {
        if t.key.trim().is_empty() {
            errors.push(format!("{field}/{i}/key"), "must not be empty");
        } else if !keys.insert(t.key.as_str()) {
            errors.push(format!("{field}/{i}/key"), format!("task key {:?} is used twice; keys must be unique within a release", t.key));
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        for (j, dep) in t.depends_on.iter().enumerate() {
            if !keys.contains(dep.as_str()) {
                errors.push(
                    format!("{field}/{i}/depends_on/{j}"),
                    format!("task {:?} depends on {:?}, which is not a task of this release", t.key, dep),
                );
            } else if dep == &t.key {
                errors.push(format!("{field}/{i}/depends_on/{j}"), format!("task {:?} cannot depend on itself", t.key));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(cycle) = find_cycle(tasks) {
        return Err(Invalid::one(field, format!("task dependencies form a cycle: {}", cycle.join(" → "))));
    }
    Ok(())
}

fn find_cycle(tasks: &[Task]) -> Option<Vec<String>> {
    let graph: BTreeMap<&str, Vec<&str>> =
        tasks.iter().map(|t| (t.key.as_str(), t.depends_on.iter().map(String::as_str).collect())).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Finished,
    }
    let mut marks: BTreeMap<&str, Mark> = graph.keys().map(|k| (*k, Mark::Unseen)).collect();
    // Iterative DFS so a long chain of tasks cannot overflow the stack.
    for start in graph.keys() {
        if marks[start] != Mark::Unseen {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some((node, next)) = stack.pop() {
            let deps = &graph[node];
            if next < deps.len() {
                stack.push((node, next + 1));
                let dep = deps[next];
                match marks.get(dep).copied().unwrap_or(Mark::Finished) {
                    Mark::OnPath => {
                        let pos = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[pos..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.to_string());
                        return Some(cycle);
                    }
                    Mark::Unseen => {
                        marks.insert(dep, Mark::OnPath);
                        stack.push((dep, 0));
                    }
                    Mark::Finished => {}
                }
            } else {
                marks.insert(node, Mark::Finished);
            }
        }
    }
    None
}

/// Checks that `key` may move to `to`. Starting (or finishing) a task needs every predecessor
/// done or skipped; the refusal names the ones still open.
pub fn check_task_status_change(tasks: &[Task], key: &str, to: TaskStatus) -> Result<(), String> {
    let Some(task) = tasks.iter().find(|t| t.key == key) else {
        return Err(format!("the release has no task {key:?}"));
    };
    if task.status == to {
        return Ok(());
    }
    if matches!(to, TaskStatus::InProgress | TaskStatus::Done) {
        let open: Vec<String> = task
            .depends_on
            .iter()
            .filter_map(|d| tasks.iter().find(|t| &t.key == d))
            .filter(|t| !t.status.releases_successors())
            .map(|t| format!("{:?} ({})", t.key, t.status.as_str()))
            .collect();
        if !open.is_empty() {
            return Err(format!("task {:?} cannot start before its predecessors are done: {}", key, open.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_task_waits_for_its_predecessors() {
        let mut tasks = vec![
            Task::new("build", "p", "Build", TaskKind::Manual, vec![]),
            Task::new("deploy", "p", "Deploy", TaskKind::Deploy, vec!["build"]),
        ];
        let err = check_task_status_change(&tasks, "deploy", TaskStatus::InProgress).unwrap_err();
        assert!(err.contains("\"build\" (pending)"), "{err}");
        tasks[0].status = TaskStatus::Skipped;
        assert!(check_task_status_change(&tasks, "deploy", TaskStatus::Done).is_ok());
        assert!(check_task_status_change(&tasks, "nope", TaskStatus::Done).is_err());
    }

    #[test]
    fn cycles_and_dangling_dependencies_are_named() {
        let tasks = vec![
            Task::new("a", "p", "A", TaskKind::Manual, vec!["c"]),
            Task::new("b", "p", "B", TaskKind::Manual, vec!["a"]),
            Task::new("c", "p", "C", TaskKind::Manual, vec!["b"]),
        ];
        let err = validate_dag(&tasks, "tasks").unwrap_err();
        assert!(err.0[0].message.contains("cycle"), "{err}");
        let tasks = vec![Task::new("a", "p", "A", TaskKind::Manual, vec!["ghost"])];
        let err = validate_dag(&tasks, "tasks").unwrap_err();
        assert_eq!(err.0[0].field, "tasks/0/depends_on/0");
    }

    proptest! {
        /// Graphs whose edges only point to earlier tasks are acyclic and must be accepted; adding
        /// an edge from the first task to the last of a chain always closes a cycle.
        #[test]
        fn forward_only_graphs_are_accepted(n in 1usize..40, seed in prop::collection::vec(any::<u32>(), 40)) {
            let tasks: Vec<Task> = (0..n).map(|i| {
                let deps: Vec<String> = if i == 0 { vec![] } else { vec![format!("t{}", seed[i] as usize % i)] };
                Task { depends_on: deps, ..Task::new(&format!("t{i}"), "p", "x", TaskKind::Manual, vec![]) }
            }).collect();
            prop_assert!(validate_dag(&tasks, "tasks").is_ok());
            let mut chain: Vec<Task> = (0..n).map(|i| {
                let deps = if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] };
                Task { depends_on: deps, ..Task::new(&format!("t{i}"), "p", "x", TaskKind::Manual, vec![]) }
            }).collect();
            if n > 1 {
                chain[0].depends_on.push(format!("t{}", n - 1));
                prop_assert!(validate_dag(&chain, "tasks").is_err());
            }
        }
    }
}
