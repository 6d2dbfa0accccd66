//! The firewall items (3.4.x), read from the ruleset `ballast-firewall.service` recorded after
//! loading it: the JSON of `nft -j list ruleset`.

use crate::node::Node;
use serde_json::Value;

/// An IP version, as the items distinguish them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The nftables table families whose base chains see this version's packets.
    fn tables(self) -> [&'static str; 2] {
        match self {
            Family::V4 => ["ip", "inet"],
            Family::V6 => ["ip6", "inet"],
        }
    }

    /// The payload protocol that matches this version's addresses.
    fn payload(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The loopback source addresses that must not arrive from elsewhere.
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1",
        }
    }
}

/// A base chain of the loaded ruleset and its rules (each a list of expressions).
#[derive(Debug)]
pub(crate) struct Chain {
    family: String,
    table: String,
    name: String,
    hook: String,
    policy: String,
    rules: Vec<Vec<Value>>,
}

impl Chain {
    fn label(&self) -> String {
        format!("{} {} {}", self.family, self.table, self.name)
    }

    /// Whether a rule accepts every packet without condition (which would undo a drop policy).
    fn accepts_everything(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.len() == 1 && rule[0].get("accept").is_some())
    }

    /// Index of the first rule made of `matches` and then `verdict`.
    fn find(&self, wanted: impl Fn(&Value) -> bool, verdict: &str) -> Option<usize> {
        self.rules.iter().position(|rule| {
            rule.last().is_some_and(|v| v.get(verdict).is_some())
                && rule.len() == 2
                && wanted(&rule[0])
        })
    }
}

/// The base chains of the ruleset recorded on the node, or why there is none.
pub(crate) fn base_chains(node: &Node<'_>) -> Result<Vec<Chain>, String> {
    let path = constants::FIREWALL_LOADED_JSON;
    let text = node.read(path).map_err(|e| {
        format!(
            "{e}: no record of a loaded ruleset; {} records it each time it loads the firewall (is settings.firewall.enabled false, or did the unit fail?)",
            constants::FIREWALL_UNIT
        )
    })?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{path} is not the JSON of `nft -j list ruleset`: {e}"))?;
    let items = json
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path} has no \"nftables\" list"))?;
    let text_of =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let mut chains: Vec<Chain> = items
        .iter()
        .filter_map(|item| item.get("chain"))
        .filter(|chain| chain.get("hook").is_some())
        .map(|chain| Chain {
            family: text_of(chain, "family"),
            table: text_of(chain, "table"),
            name: text_of(chain, "name"),
            hook: text_of(chain, "hook"),
            policy: text_of(chain, "policy"),
            rules: Vec::new(),
        })
        .collect();
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        let key = (
            text_of(rule, "family"),
            text_of(rule, "table"),
            text_of(rule, "chain"),
        );
        if let Some(chain) = chains
            .iter_mut()
            .find(|c| (c.family.clone(), c.table.clone(), c.name.clone()) == key)
        {
            let expr = rule
                .get("expr")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            chain.rules.push(expr);
        }
    }
    Ok(chains)
}

/// The input chains of `family` that drop by default (and do not accept everything first).
fn dropping_inputs(chains: &[Chain], family: Family) -> Vec<&Chain> {
    chains
        .iter()
        .filter(|c| family.tables().contains(&c.family.as_str()))
        .filter(|c| c.hook == "input" && c.policy == "drop" && !c.accepts_everything())
        .collect()
}

/// What the ruleset does with forwarded and outbound packets, for the evidence.
fn open_directions(chains: &[Chain], family: Family) -> String {
    let mut out = Vec::new();
    for hook in ["forward", "output"] {
        let dropping: Vec<String> = chains
            .iter()
            .filter(|c| family.tables().contains(&c.family.as_str()))
            .filter(|c| c.hook == hook && c.policy == "drop")
            .map(Chain::label)
            .collect();
        if dropping.is_empty() {
            out.push(format!("{hook}: not filtered"));
        } else {
            out.push(format!(
                "{hook}: dropped by default in {}",
                dropping.join(", ")
            ));
        }
    }
    format!(
        "{} (Ballast filters inbound traffic only; containers publish through their own network)",
        out.join(", ")
    )
}

/// 3.4.1.1 and 3.4.2.1: inbound traffic is dropped unless a rule admits it.
pub(crate) fn default_deny(node: &Node<'_>, family: Family) -> (bool, Vec<String>) {
    let chains = match base_chains(node) {
        Ok(chains) => chains,
        Err(e) => return (false, vec![e]),
    };
    let inputs = dropping_inputs(&chains, family);
    let mut evidence: Vec<String> = inputs
        .iter()
        .map(|c| format!("{}: hook input, policy drop", c.label()))
        .collect();
    let pass = !inputs.is_empty();
    if !pass {
        let seen: Vec<String> = chains
            .iter()
            .filter(|c| family.tables().contains(&c.family.as_str()) && c.hook == "input")
            .map(|c| {
                format!(
                    "{}: policy {}{}",
                    c.label(),
                    c.policy,
                    if c.accepts_everything() {
                        ", accepts everything"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        evidence.push(format!(
            "no input chain for {} drops by default{}",
            family.payload(),
            if seen.is_empty() {
                String::new()
            } else {
                format!(" (found: {})", seen.join("; "))
            }
        ));
    }
    evidence.push(open_directions(&chains, family));
    (pass, evidence)
}

/// Whether `expr` matches packets that came in on the loopback interface.
fn from_loopback(expr: &Value) -> bool {
    let Some(m) = expr.get("match") else {
        return false;
    };
    let key = m.pointer("/left/meta/key").and_then(Value::as_str);
    matches!(key, Some("iif" | "iifname"))
        && m.get("right").and_then(Value::as_str) == Some("lo")
        && m.get("op")
            .and_then(Value::as_str)
            .is_some_and(|op| op == "==")
}

/// Whether `expr` matches packets that leave through the loopback interface.
fn to_loopback(expr: &Value) -> bool {
    let Some(m) = expr.get("match") else {
        return false;
    };
    let key = m.pointer("/left/meta/key").and_then(Value::as_str);
    matches!(key, Some("oif" | "oifname")) && m.get("right").and_then(Value::as_str) == Some("lo")
}

/// Whether `expr` matches the loopback source addresses of `family`.
fn loopback_source(expr: &Value, family: Family) -> bool {
    let Some(m) = expr.get("match") else {
        return false;
    };
    if m.pointer("/left/payload/protocol").and_then(Value::as_str) != Some(family.payload())
        || m.pointer("/left/payload/field").and_then(Value::as_str) != Some("saddr")
    {
        return false;
    }
    let right = m.get("right").unwrap_or(&Value::Null);
    let written = match (right.as_str(), right.get("prefix")) {
        (Some(address), _) => address.to_string(),
        (None, Some(prefix)) => format!(
            "{}/{}",
            prefix.get("addr").and_then(Value::as_str).unwrap_or(""),
            prefix.get("len").and_then(Value::as_u64).unwrap_or(0)
        ),
        _ => return false,
    };
    match family {
        Family::V4 => written == "127.0.0.0/8",
        Family::V6 => written == "::1" || written == "::1/128",
    }
}

/// 3.4.1.2 and 3.4.2.2: loopback traffic is accepted, and traffic from elsewhere claiming a
/// loopback source is dropped (after the loopback accept, so the node's own traffic passes).
pub(crate) fn loopback(node: &Node<'_>, family: Family) -> (bool, Vec<String>) {
    let chains = match base_chains(node) {
        Ok(chains) => chains,
        Err(e) => return (false, vec![e]),
    };
    let inputs = dropping_inputs(&chains, family);
    if inputs.is_empty() {
        return (
            false,
            vec![format!(
                "no input chain for {} drops by default, so nothing is configured for loopback",
                family.payload()
            )],
        );
    }
    let mut evidence = Vec::new();
    let mut pass = true;
    for chain in inputs {
        let accept = chain.find(from_loopback, "accept");
        let drop = chain.find(|e| loopback_source(e, family), "drop");
        match (accept, drop) {
            (Some(a), Some(d)) if a < d => evidence.push(format!(
                "{}: accepts iif lo (rule {}), then drops source {} from elsewhere (rule {})",
                chain.label(),
                a + 1,
                family.loopback(),
                d + 1
            )),
            (a, d) => {
                pass = false;
                evidence.push(format!(
                    "{}: {}; {}",
                    chain.label(),
                    a.map_or("no rule accepts iif lo".to_string(), |i| format!(
                        "accepts iif lo at rule {}",
                        i + 1
                    )),
                    d.map_or(
                        format!("no rule drops source {} after it", family.loopback()),
                        |i| format!(
                            "drops source {} at rule {} (before the accept)",
                            family.loopback(),
                            i + 1
                        )
                    )
                ));
            }
        }
    }
    for chain in chains
        .iter()
        .filter(|c| family.tables().contains(&c.family.as_str()))
        .filter(|c| c.hook == "output" && c.policy == "drop")
    {
        if chain.find(to_loopback, "accept").is_some() {
            evidence.push(format!("{}: accepts oif lo", chain.label()));
        } else {
            pass = false;
            evidence.push(format!(
                "{}: drops output by default and does not accept oif lo",
                chain.label()
            ));
        }
    }
    if pass {
        evidence.push("output to loopback is not dropped".to_string());
    }
    (pass, evidence)
}

/// Evidence for the manual items 3.4.1.3 and 3.4.2.3: whether replies are admitted.
pub(crate) fn established(node: &Node<'_>, family: Family) -> Vec<String> {
    let chains = match base_chains(node) {
        Ok(chains) => chains,
        Err(e) => return vec![e],
    };
    let mut evidence = Vec::new();
    for chain in dropping_inputs(&chains, family) {
        let admits = chain.rules.iter().any(|rule| {
            rule.last().is_some_and(|v| v.get("accept").is_some())
                && rule.iter().any(|e| {
                    e.pointer("/match/left/ct/key").and_then(Value::as_str) == Some("state")
                        && e.pointer("/match/right")
                            .is_some_and(|r| r.to_string().contains("established"))
                })
        });
        evidence.push(format!(
            "{}: {}",
            chain.label(),
            if admits {
                "accepts established and related inbound traffic"
            } else {
                "has no rule accepting established inbound traffic"
            }
        ));
    }
    evidence.push(open_directions(&chains, family));
    evidence
        .push("judge whether outbound traffic needs filtering for this node's role".to_string());
    evidence
}
