//! The SDK builds its bindings from its own copy of the contract, `wit/stage.wit`, so that it
//! builds wherever it is fetched from. The copy must stay the workspace's `wit/0.3/stage.wit`,
//! byte for byte.

use std::path::Path;

#[test]
fn the_sdk_copy_of_the_contract_is_the_workspace_contract() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = std::fs::read(crate_dir.join("wit/stage.wit")).expect("read the SDK's copy");
    let contract = std::fs::read(crate_dir.join("../../wit/0.3/stage.wit"))
        .expect("read the workspace's wit/0.3/stage.wit");
    assert!(
        copy == contract,
        "plugins/sdk/wit/stage.wit differs from wit/0.3/stage.wit: copy the contract again"
    );
}
