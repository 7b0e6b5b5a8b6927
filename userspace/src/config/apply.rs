//! A configuration file as control-plane commands: what the file declares, against what the
//! control plane has, as one batch on the I/O-free core (applied whole or not at all).
//!
//! Owner rule: the file owns the VIPs and elements it declares ([`Owner::Config`]).
//! - A VIP the file declares is made exactly as declared; one added by hand with that address
//!   is taken over. A VIP the file owned and no longer declares is deleted; VIPs added by hand
//!   and not declared are left alone.
//! - An element the file declares is added as the file's, or its weight changed; an element
//!   that is already there with another owner (added by hand, or registered) is left alone and
//!   reported. An element the file owned and no longer declares is removed. A drain done by
//!   hand on a file's element lasts until the file changes that element.
//! - Pools the file declares get its health policy; the others the defaults.
//!
//! Unchanged VIPs and elements get no write at all, so a reload that changes one VIP leaves
//! every other table as it is.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};

use super::ConfigFile;
use crate::{
    addr::{ElementAddr, PoolHandle},
    control_core::{self, Core, Hop, NeighbourTarget, Upsert, VipChange},
    state::Owner,
};

/// What applying a file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub vips_added: Vec<String>,
    pub vips_changed: Vec<String>,
    pub vips_adopted: Vec<String>,
    pub vips_removed: Vec<String>,
    pub elements_added: Vec<String>,
    pub elements_changed: Vec<String>,
    pub elements_removed: Vec<String>,
    /// Declared elements another owner holds (left as they are).
    pub left_alone: Vec<String>,
    pub pools_changed: Vec<String>,
    /// New elements waiting for their next hop (the daemon resolves them).
    pub pending: Vec<NeighbourTarget>,
}

impl Applied {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let part =
            |what: &str, v: &[String]| (!v.is_empty()).then(|| format!("{what} {}", v.join(", ")));
        let parts: Vec<String> = [
            part("VIPs added:", &self.vips_added),
            part("VIPs changed:", &self.vips_changed),
            part("VIPs taken over from `vip add`:", &self.vips_adopted),
            part("VIPs removed:", &self.vips_removed),
            part("elements added:", &self.elements_added),
            part("elements reweighted:", &self.elements_changed),
            part("elements removed:", &self.elements_removed),
            part("pool policies changed:", &self.pools_changed),
            part("left to their owner:", &self.left_alone),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "nothing changed".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Moves the control plane to what `cfg` declares (see the module's owner rule).
pub fn apply(core: &mut Core, cfg: &ConfigFile) -> Result<Applied> {
    let mut out = Applied::default();
    let declared: Vec<(PoolHandle, ElementAddr, u16)> = cfg
        .pools
        .iter()
        .flat_map(|(name, p)| {
            let pool: Option<PoolHandle> = name.parse().ok();
            p.all_elements(name)
                .into_iter()
                .filter_map(move |(a, w, _)| Some((pool.clone()?, a, w)))
        })
        .collect();

    // 1. The file's elements it no longer declares.
    let st = core.state();
    let kept: BTreeSet<usize> = declared
        .iter()
        .filter_map(|(p, a, _)| control_core::find_element(st, p, a))
        .collect();
    let gone: Vec<(PoolHandle, ElementAddr)> = st
        .elements
        .iter()
        .enumerate()
        .filter(|(i, e)| e.owner == Owner::Config && !kept.contains(i))
        .filter_map(|(_, e)| Some((e.pool.parse().ok()?, e.element_addr())))
        .collect();
    for (p, a) in gone {
        core.remove_owned_element(&p, a, Owner::Config);
        out.elements_removed.push(format!("{p}/{a}"));
    }

    // 2. The file's VIPs it no longer declares.
    let gone: Vec<_> = core
        .state()
        .vips
        .iter()
        .filter(|v| v.owner == Owner::Config)
        .map(|v| v.parsed())
        .filter(|v| !cfg.vips.iter().any(|d| d.address == *v))
        .collect();
    for v in gone {
        core.del_vip(v)?;
        out.vips_removed.push(v.to_string());
    }

    // 3. Pool policies.
    let stale: Vec<String> = core
        .state()
        .pools
        .keys()
        .filter(|p| !cfg.pools.contains_key(*p))
        .cloned()
        .collect();
    for p in stale {
        if core.set_pool_policy(&p, None)? {
            out.pools_changed.push(p);
        }
    }
    for (name, p) in &cfg.pools {
        if core
            .set_pool_policy(name, Some(p.policy()))
            .with_context(|| format!("pool {name}"))?
        {
            out.pools_changed.push(name.clone());
        }
    }

    // 4. VIPs.
    for v in &cfg.vips {
        let change = core
            .declare_vip(
                v.address,
                &v.pool,
                v.mode,
                v.snat,
                v.nat_timeout_s,
                &v.allow,
                v.hash,
            )
            .with_context(|| format!("VIP {}", v.address))?;
        let list = match change {
            VipChange::Added => &mut out.vips_added,
            VipChange::Changed => &mut out.vips_changed,
            VipChange::Adopted => &mut out.vips_adopted,
            VipChange::Unchanged => continue,
        };
        list.push(v.address.to_string());
    }

    // 5. Elements.
    for (pool, addr, weight) in &declared {
        let st = core.state();
        if let Some(i) = control_core::find_element(st, pool, addr) {
            let e = &st.elements[i];
            if e.owner != Owner::Config {
                out.left_alone
                    .push(format!("{pool}/{} ({})", e.element_addr(), e.owner.name()));
                continue;
            }
            if e.weight == *weight {
                continue;
            }
        }
        let r = core
            .upsert_element(pool, *addr, *weight, Upsert::Config, Hop::Pending)
            .with_context(|| format!("pool {pool}: element {addr}"))?;
        let Some(r) = r else { continue };
        if r.needs_resolution {
            out.pending.push(NeighbourTarget::of(&r.element));
            out.elements_added.push(format!("{pool}/{addr}"));
        } else {
            out.elements_changed
                .push(format!("{pool}/{addr} weight {weight}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::parse,
        control_core::Write,
        executor::{Executor, Memory},
        state::{AttachOptions, ElementState, Health, State},
    };

    const SIZE: u32 = 251;

    fn state() -> State {
        let opts = AttachOptions {
            maglev_size: SIZE,
            max_vips: 8,
            max_elements: 16,
            ..AttachOptions::default()
        };
        State::new("veth0", 1, 1, None, opts)
    }

    fn file(body: &str) -> ConfigFile {
        parse(
            &format!("[interface]\nname = \"veth0\"\n{body}"),
            "test.toml",
        )
        .unwrap()
    }

    /// Applies `cfg` as one batch, resolves every pending element, and returns the writes.
    fn run(st: &mut State, dp: &mut Memory, cfg: &ConfigFile) -> (Applied, Vec<Write>) {
        let mut core = Core::new(st.clone());
        let applied = apply(&mut core, cfg).unwrap();
        let (mut next, mut writes) = core.finish();
        let mut core = Core::new(next.clone());
        for t in core.pending_neighbours() {
            core.neighbour(
                &t,
                Some(crate::state::NextHop {
                    ifindex: 1,
                    dst_mac: [2, 0, 0, 0, 0, 1],
                    src_mac: [2, 0, 0, 0, 0, 2],
                    gateway: None,
                }),
            );
        }
        let (n, w) = core.finish();
        next = n;
        writes.extend(w);
        for w in &writes {
            dp.execute(w).unwrap();
        }
        *st = next;
        (applied, writes)
    }

    const BASE: &str = r#"
[[vip]]
address = "198.18.0.1:80/tcp"
pool = "web"
[[vip]]
address = "198.18.0.2:53/udp"
pool = "dns"
[pool.web]
elements = ["198.18.1.2", "198.18.1.3"]
[pool.dns]
elements = ["198.18.1.4"]
"#;

    #[test]
    fn a_file_is_applied_then_a_reload_touches_only_what_changed() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let (a, _) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.vips_added.len(), 2);
        assert_eq!(a.elements_added.len(), 3);
        assert!(st.elements.iter().all(|e| e.owner == Owner::Config));
        assert!(st.vips.iter().all(|v| v.owner == Owner::Config));
        // The same file again: no write at all.
        let (a, writes) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.summary(), "nothing changed");
        assert!(writes.is_empty(), "{writes:?}");
        // One more element in web, dns's VIP gone: web's table flips, dns's element goes.
        let next = BASE
            .replace("\"198.18.1.3\"]", "\"198.18.1.3\", \"198.18.1.5\"]")
            .replace(
                "[[vip]]\naddress = \"198.18.0.2:53/udp\"\npool = \"dns\"\n",
                "",
            );
        let web_slots: Vec<u32> = st.pool_elements("web").map(|e| e.slot).collect();
        let (a, writes) = run(&mut st, &mut dp, &file(&next));
        assert_eq!(a.vips_removed, vec!["198.18.0.2:53/udp".to_string()]);
        assert_eq!(a.elements_added, vec!["web/198.18.1.5".to_string()]);
        // web's existing elements were not rewritten.
        for w in &writes {
            if let Write::Element { slot, .. } = w {
                assert!(!web_slots.contains(slot), "{w:?}");
            }
        }
        assert_eq!(dp.violations(), Vec::<String>::new());
        // Removing the pool's element the file declared removes it.
        let (a, _) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.elements_removed, vec!["web/198.18.1.5".to_string()]);
        assert_eq!(dp.violations(), Vec::<String>::new());
    }

    #[test]
    fn elements_of_other_owners_are_left_alone_and_hand_vips_are_taken_over() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let mut core = Core::new(st.clone());
        core.upsert_element(
            &"web".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            7,
            Upsert::MustBeNew,
            Hop::Resolved(Err("test".into())),
        )
        .unwrap();
        core.add_vip(
            "198.18.0.1:80/tcp".parse().unwrap(),
            &"web".parse().unwrap(),
            crate::addr::Mode::Dsr,
            None,
            None,
            &[],
            crate::addr::VipHash::Flow,
        )
        .unwrap();
        let (next, writes) = core.finish();
        for w in &writes {
            dp.execute(w).unwrap();
        }
        st = next;
        let (a, _) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.left_alone, vec!["web/198.18.1.2 (manual)".to_string()]);
        assert_eq!(a.vips_adopted, vec!["198.18.0.1:80/tcp".to_string()]);
        let hand = st
            .elements
            .iter()
            .find(|e| e.addr.to_string() == "198.18.1.2")
            .unwrap();
        assert_eq!((hand.owner, hand.weight), (Owner::Manual, 7));
        // The file dropping web keeps the hand-added element, removes the file's.
        let (a, _) = run(
            &mut st,
            &mut dp,
            &file("[pool.dns]\nelements = [\"198.18.1.4\"]\n"),
        );
        assert_eq!(a.elements_removed, vec!["web/198.18.1.3".to_string()]);
        assert!(st.elements.iter().any(|e| e.owner == Owner::Manual));
        assert_eq!(dp.violations(), Vec::<String>::new());
    }

    #[test]
    fn a_hand_drain_survives_a_reload_that_does_not_change_the_element() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        run(&mut st, &mut dp, &file(BASE));
        let mut core = Core::new(st.clone());
        core.set_element_state(
            &"web".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            ElementState::Draining,
        )
        .unwrap();
        st = core.finish().0;
        run(&mut st, &mut dp, &file(BASE));
        let e = &st.elements[st
            .find_element(&"web".parse().unwrap(), &"198.18.1.2".parse().unwrap())
            .unwrap()];
        assert_eq!(e.state, ElementState::Draining);
        assert_eq!(e.health, Health::Up);
    }

    #[test]
    fn an_allow_list_is_applied_changed_and_removed_with_the_file() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let with = |list: &str| {
            file(&BASE.replace(
                "pool = \"web\"\n",
                &format!("pool = \"web\"\nallow = [{list}]\n"),
            ))
        };
        let (a, _) = run(&mut st, &mut dp, &with("\"198.18.0.0/16\""));
        assert_eq!(a.vips_added.len(), 2);
        assert_eq!(st.vips[0].allow.len(), 1);
        let (a, _) = run(&mut st, &mut dp, &with("\"198.18.0.0/16\""));
        assert_eq!(a.summary(), "nothing changed");
        let (a, _) = run(
            &mut st,
            &mut dp,
            &with("\"198.18.0.0/15\", \"203.0.113.7\""),
        );
        assert_eq!(a.vips_changed, vec!["198.18.0.1:80/tcp".to_string()]);
        assert_eq!(st.vips[0].allow.len(), 2);
        let (a, _) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.vips_changed, vec!["198.18.0.1:80/tcp".to_string()]);
        assert!(st.vips[0].allow.is_empty());
        assert_eq!(dp.violations(), Vec::<String>::new());
    }

    #[test]
    fn a_hash_change_in_the_file_is_a_vip_change() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        let client = file(&BASE.replace("pool = \"web\"\n", "pool = \"web\"\nhash = \"client\"\n"));
        run(&mut st, &mut dp, &file(BASE));
        let (a, writes) = run(&mut st, &mut dp, &client);
        assert_eq!(a.vips_changed, vec!["198.18.0.1:80/tcp".to_string()]);
        assert_eq!(a.summary(), "VIPs changed: 198.18.0.1:80/tcp");
        assert_eq!(st.vips[0].hash, crate::addr::VipHash::Client);
        let flags: Vec<u8> = writes
            .iter()
            .filter_map(|w| match w {
                Write::Vip { info, .. } => Some(info.flags),
                _ => None,
            })
            .collect();
        assert_eq!(flags, vec![rsplb_common::VIP_F_CLIENT_HASH]);
        let (a, _) = run(&mut st, &mut dp, &client);
        assert_eq!(a.summary(), "nothing changed");
        let (a, _) = run(&mut st, &mut dp, &file(BASE));
        assert_eq!(a.vips_changed, vec!["198.18.0.1:80/tcp".to_string()]);
        assert_eq!(st.vips[0].hash, crate::addr::VipHash::Flow);
        assert_eq!(dp.violations(), Vec::<String>::new());
    }

    #[test]
    fn a_file_the_core_refuses_changes_nothing() {
        let (mut st, mut dp) = (state(), Memory::new(SIZE));
        run(&mut st, &mut dp, &file(BASE));
        // A hand-added element with another port in a pool that becomes DSR-served: refused.
        let mut core = Core::new(st.clone());
        core.upsert_element(
            &"api".parse().unwrap(),
            "198.18.1.9:8080".parse().unwrap(),
            1,
            Upsert::MustBeNew,
            Hop::Resolved(Err("test".into())),
        )
        .unwrap();
        st = core.finish().0;
        let before = st.clone();
        let bad = file(&format!(
            "{BASE}[[vip]]\naddress = \"198.18.0.3:80/tcp\"\npool = \"api\"\n[pool.api]\n"
        ));
        let mut core = Core::new(st.clone());
        let err = apply(&mut core, &bad).unwrap_err();
        assert!(format!("{err:#}").contains("DSR"), "{err:#}");
        // The caller drops the core: the state it would save is the old one.
        assert_eq!(st, before);
    }
}
