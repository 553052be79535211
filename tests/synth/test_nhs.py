"""NHS numbers: the modulus-11 check (validity of generated numbers: test_generate.py)."""

from __future__ import annotations

from natlink.synth.nhs import nhs_check_digit_ok


def test_nhs_check_digit_reference_values():
    # by hand: 4*10 + 0*9 + 1*8 + 0*7 + 2*6 + 3*5 + 2*4 + 1*3 + 3*2 = 92; 92 mod 11 = 4; 11 - 4 = 7
    assert nhs_check_digit_ok("4010232137")
    assert not nhs_check_digit_ok("4010232136")
    assert not nhs_check_digit_ok("0410232137")  # adjacent digits swapped
    # 1000000060: 1*10 + 6*2 = 22, 22 mod 11 = 0, 11 - 0 = 11 -> check digit 0
    assert nhs_check_digit_ok("1000000060") and not nhs_check_digit_ok("1000000061")
    assert not nhs_check_digit_ok(None)
