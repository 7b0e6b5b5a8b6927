//! The operator's commands: `rsplb status` and `rsplb flow get`.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use rsplb::{
    addr::Vip,
    cli::status::{StatusInput, status_json, status_text},
    control::{Balancer, flow},
    daemon::status::{DaemonStatus, unix_ms},
    dataplane::flows,
    maps::pin_dir,
};

#[derive(Subcommand)]
pub enum FlowCmd {
    /// Which element a flow is pinned to, or would be placed on, and why.
    #[command(
        after_long_help = "Reads the flow table and the VIP's Maglev table as the XDP \
        program does (Katran's getRealForFlow): a flow pinned in the flow table keeps its \
        element while that element holds its slot, for the VIP, within the idle timeout; \
        any other flow is placed by Maglev (the table entry of its hash). A TCP SYN is always \
        placed by Maglev, so a new connection from the same tuple may go elsewhere than a \
        pinned one: the answer says so.\n\n\
        Examples:\n  rsplb flow get 198.18.0.2:40000 198.19.0.100:80/tcp\n  \
        rsplb flow get [fd00::2]:40000 [fd00:1::100]:53/udp --json\n  \
        rsplb --netns lb -i veth-lb flow get 198.18.0.2:40000 198.19.0.100:80/tcp"
    )]
    Get {
        /// The client's address and source port.
        #[arg(value_name = "CLIENT:PORT")]
        client: SocketAddr,
        /// The VIP, ADDR:PORT/PROTO.
        #[arg(value_name = "VIP:PORT/PROTO")]
        vip: Vip,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `rsplb status`.
pub fn status(iface: &str, json: bool) -> Result<()> {
    let b = Balancer::open(iface)?;
    let state = b.state()?;
    let digests = b.vip_digests()?;
    let stats = b.stats()?;
    let daemon = DaemonStatus::read(iface)?;
    let config = rsplb::daemon::configured::read_status(iface);
    let input = StatusInput {
        state: &state,
        digests: &digests,
        stats: &stats,
        daemon: daemon.as_ref(),
        config: config.as_ref(),
        now_unix_ms: unix_ms(),
    };
    if json {
        println!("{}", status_json(&input));
    } else {
        print!("{}", status_text(&input));
    }
    Ok(())
}

/// `rsplb flow ...`.
pub fn flow(iface: &str, cmd: FlowCmd) -> Result<()> {
    let FlowCmd::Get { client, vip, json } = cmd;
    let b = Balancer::open(iface)?;
    let st = b.state()?;
    let Some(v) = st.vips.iter().find(|v| v.parsed() == vip) else {
        bail!("{vip} is not a VIP of {iface} (`rsplb vip list` shows them)");
    };
    let key = flow::flow_key(client, &vip)?;
    let sets = st.options.config().flow_sets;
    let set_index = rsplb_common::flow_set_index(rsplb_common::table_hash(&key), sets);
    let set = flows::read_set(&pin_dir(iface), set_index)
        .with_context(|| format!("reading the flow table of {iface}"))?;
    let table = b.read_maglev(v.table)?;
    let answer = flow::explain(
        &st,
        v,
        client,
        &key,
        set.as_ref(),
        &table,
        flows::flow_time_now(),
    );
    if json {
        println!("{}", serde_json::to_value(&answer)?);
    } else {
        print!("{}", flow::text(&answer));
    }
    Ok(())
}
