#![no_main]

use alknet_tests::fuzz;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz::storage_input(data));
