//! A lab server: answers every TCP line and UDP datagram with its name and counts what it saw.
//! See `rsplb_integration::server`.

use anyhow::Context as _;
use rsplb_integration::server::{ServerConfig, serve};

fn main() {
    let result = ServerConfig::from_args(std::env::args().skip(1)).and_then(|cfg| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?
            .block_on(serve(cfg))
    });
    if let Err(e) = result {
        eprintln!("rsplb-testserver: {e:#}");
        std::process::exit(1);
    }
}
