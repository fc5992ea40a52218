//! Starts a grid and keeps it running until Enter is pressed (or stdin closes), printing where
//! everything is. Handy for poking at a real grid by hand:
//!
//! ```sh
//! RUST_LOG=local_grid=debug cargo run -p local-grid --example grid
//! ```

use std::io::BufRead;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let started = Instant::now();
    let grid = local_grid::Grid::start(local_grid::GridOptions::default())?;
    println!("grid ready in {:.1?}", started.elapsed());
    println!(
        "gateway:   {} ({})",
        grid.gateway_url(),
        grid.gateway_dir().display()
    );
    for node in grid.storage_nodes() {
        println!("{}:  port {}  {}", node.name, node.port, node.dir.display());
    }
    println!("press Enter to stop");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let stopping = Instant::now();
    drop(grid);
    println!("grid stopped in {:.1?}", stopping.elapsed());
    Ok(())
}
