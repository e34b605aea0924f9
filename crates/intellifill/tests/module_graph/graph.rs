//! A directed graph of named nodes, each edge carrying where it comes from, and the cycles in it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `from -> to -> the first reference that makes the edge (file:line and the path as written)`.
#[derive(Debug, Default)]
pub struct Graph {
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    /// Adds `from -> to` (self-edges are dropped); the first evidence given for an edge is kept.
    pub fn add(&mut self, from: &str, to: &str, evidence: impl FnOnce() -> String) {
        if from != to {
            self.edges.entry(from.to_owned()).or_default().entry(to.to_owned()).or_insert_with(evidence);
        }
    }

    fn successors(&self, node: &str) -> impl Iterator<Item = &String> {
        self.edges.get(node).into_iter().flat_map(|to| to.keys())
    }

    /// Cycles that together pass over every edge lying on a cycle: for each such edge `u -> v`, `u -> v`
    /// followed by a shortest way back from `v` to `u`. Each cycle starts at its smallest node; sorted.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut found = BTreeSet::new();
        for component in self.strongly_connected().into_iter().filter(|c| c.len() > 1) {
            for from in &component {
                for to in self.successors(from).filter(|to| component.contains(*to)) {
                    let mut cycle = vec![from.clone()];
                    cycle.extend(self.shortest_path(to, from, &component));
                    cycle.pop();
                    let start = cycle.iter().enumerate().min_by_key(|(_, n)| *n).map_or(0, |(i, _)| i);
                    cycle.rotate_left(start);
                    found.insert(cycle);
                }
            }
        }
        found.into_iter().collect()
    }

    /// The edges along `cycle`, each with its evidence.
    pub fn edges_of<'a>(&'a self, cycle: &'a [String]) -> impl Iterator<Item = (&'a str, &'a str, &'a str)> {
        cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(from, to)| (from.as_str(), to.as_str(), &self.edges[from][to][..]))
    }

    /// Nodes from `from` to `to` (both included), within `allowed`; `to` must be reachable.
    fn shortest_path(&self, from: &str, to: &str, allowed: &BTreeSet<String>) -> Vec<String> {
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                break;
            }
            for next in self.successors(node).filter(|n| allowed.contains(*n)) {
                if next != from && !previous.contains_key(next.as_str()) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![to.to_owned()];
        while path.last().is_some_and(|n| n != from) {
            let step = previous[path.last().map(String::as_str).unwrap_or_default()];
            path.push(step.to_owned());
        }
        path.reverse();
        path
    }

    /// Tarjan's strongly connected components.
    fn strongly_connected(&self) -> Vec<BTreeSet<String>> {
        #[derive(Default)]
        struct State<'g> {
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            components: Vec<BTreeSet<String>>,
        }
        fn visit<'g>(graph: &'g Graph, node: &'g str, s: &mut State<'g>) {
            let n = s.index.len();
            s.index.insert(node, n);
            s.low.insert(node, n);
            s.stack.push(node);
            s.on_stack.insert(node);
            for next in graph.successors(node) {
                if !s.index.contains_key(next.as_str()) {
                    visit(graph, next, s);
                    let low = s.low[node].min(s.low[next.as_str()]);
                    s.low.insert(node, low);
                } else if s.on_stack.contains(next.as_str()) {
                    let low = s.low[node].min(s.index[next.as_str()]);
                    s.low.insert(node, low);
                }
            }
            if s.low[node] == s.index[node] {
                let mut component = BTreeSet::new();
                while let Some(member) = s.stack.pop() {
                    s.on_stack.remove(member);
                    component.insert(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                s.components.push(component);
            }
        }
        let mut state = State::default();
        for node in self.edges.keys() {
            if !state.index.contains_key(node.as_str()) {
                visit(self, node, &mut state);
            }
        }
        state.components
    }
}
