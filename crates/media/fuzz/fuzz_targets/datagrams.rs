//! Runs of datagrams from the network into a media loop with a call of two:
//! STUN for its peers and noise, from known and unknown addresses, with time
//! passing. Nothing here may panic the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roost_media::fuzz::{datagrams, Harness};

fuzz_target!(|input: &[u8]| {
    let mut harness = Harness::new();
    datagrams(&mut harness, input);
});
