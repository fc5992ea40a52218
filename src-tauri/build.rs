//! Embeds `tauri.conf.json`, the page in `../ui` and the icons into the binary.
fn main() {
    tauri_build::build();
}
