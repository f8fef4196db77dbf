#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| regsweep_fuzz_targets::selector_overlap(data));
