//! Prints every compared tensor of a parity fixture folder: `cargo run -p trm-model --example parity_dump -- DIR`.
use burn::backend::{Autodiff, NdArray};
fn main() {
    let dir = std::env::args().nth(1).expect("usage: parity_dump FIXTURE_DIR");
    let r = trm_model::parity::run_parity::<Autodiff<NdArray<f32>>>(std::path::Path::new(&dir), &Default::default())
        .unwrap();
    for row in &r.rows {
        println!(
            "{:60} err {:.3e} floor {:.3e} tol {:.1e} {}",
            row.name,
            row.rel_err,
            row.floor.unwrap_or(f64::NAN),
            row.tolerance,
            if row.ok { "ok" } else { "FAIL" }
        );
    }
}
