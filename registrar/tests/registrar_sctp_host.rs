//! The registrar's choice of transports on the host it runs on: SCTP beside TCP where the kernel
//! has it; on a kernel without SCTP (this project's build host) TCP only by default, and a clear
//! error when SCTP was asked for explicitly.

use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::shell::Registrar;

fn loopback_config() -> RegistrarConfig {
    let mut c = RegistrarConfig {
        asap_listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin: None,
        ..RegistrarConfig::default()
    };
    c.announce.enabled = false;
    c
}

#[tokio::test]
async fn sctp_is_served_beside_tcp_on_the_same_port_where_the_kernel_has_it() {
    let r = Registrar::bind(loopback_config()).await.expect("binds");
    let tcp = r.asap_addrs().to_vec();
    if rsplb_registrar::sctp::supported().is_ok() {
        assert_eq!(
            r.sctp_addrs(),
            tcp.as_slice(),
            "SCTP mirrors TCP's addresses and ports"
        );
    } else {
        assert!(r.sctp_addrs().is_empty(), "no SCTP here: TCP only");
    }
}

#[tokio::test]
async fn sctp_asked_for_explicitly_fails_clearly_without_kernel_support() {
    if rsplb_registrar::sctp::supported().is_ok() {
        return;
    }
    let mut c = loopback_config();
    c.asap_sctp_listen = Some(vec!["127.0.0.1:0".parse().unwrap()]);
    let err = Registrar::bind(c).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("SCTP 127.0.0.1:0"), "{text}");
    assert!(text.contains("no SCTP"), "{text}");
}

#[tokio::test]
async fn an_empty_sctp_list_means_tcp_only() {
    let mut c = loopback_config();
    c.asap_sctp_listen = Some(Vec::new());
    let r = Registrar::bind(c).await.expect("binds");
    assert!(r.sctp_addrs().is_empty());
    assert_eq!(r.asap_addrs().len(), 1);
}

#[tokio::test]
async fn stats_carry_sctp_counters_only_where_sctp_is_served() {
    let r = Registrar::bind(loopback_config()).await.expect("binds");
    let serving = !r.sctp_addrs().is_empty();
    let control = r.control();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(r.run(async {
        let _ = stopped.await;
    }));
    let stats = control.stats().await.expect("stats");
    assert_eq!(stats.sctp.is_some(), serving, "{stats:?}");
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json.get("sctp").is_some(), serving, "{json}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
