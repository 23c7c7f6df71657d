from __future__ import annotations

from edge_agent.identity.plate_match import plates_match
from edge_agent.vision.plate_vote import vote_plate


def test_two_frames_agreeing_win_over_a_wrong_third() -> None:
    vote = vote_plate([["京A12345"], ["京A12346"], ["京A12345"]])
    assert vote.text == "京A12345"
    assert (vote.frames, vote.support, vote.by_character) == (3, 2, False)


def test_confusable_spellings_count_as_one_read() -> None:
    vote = vote_plate([["京AB2345"], ["京A82345"], []])
    assert vote.text is not None and plates_match(vote.text, "京AB2345")
    assert vote.support == 2


def test_characters_are_voted_when_no_whole_read_repeats() -> None:
    # Each frame is wrong in a different place; every position still has a majority.
    vote = vote_plate([["京A1234X"], ["京A1Z345"], ["沪A12345"]])
    assert vote.text == "京A12345"
    assert vote.by_character and vote.support == 2


def test_character_vote_prints_the_raw_character() -> None:
    vote = vote_plate([["粤B1234C"], ["粤B1Z34E"], ["粤B12X4E"]])
    assert vote.text == "粤B1234E"


def test_disagreement_gives_no_text() -> None:
    assert vote_plate([["京A12345"], ["沪B67890"], ["粤C24680"]]).text is None
    assert vote_plate([["京A12345"], ["沪B67890"]]).text is None  # a tie is no winner


def test_one_frame_is_not_enough_by_default() -> None:
    assert vote_plate([["京A12345"]]).text is None
    assert vote_plate([["京A12345"]], min_agree=1).text == "京A12345"


def test_frames_without_reads_and_junk_give_no_text() -> None:
    assert vote_plate([]).text is None
    assert vote_plate([[], [], []]).text is None
    assert vote_plate([["", "··"], [None], ["-"]]).text is None  # type: ignore[list-item]


def test_two_plates_in_a_frame_each_get_one_vote_per_frame() -> None:
    # A second vehicle's plate in every frame must not outvote the truck's.
    frames = [["京A12345", "沪B67890"], ["京A12345"], ["沪B67890", "京A12345"]]
    assert vote_plate(frames).text == "京A12345"


def test_reads_of_other_lengths_do_not_break_the_character_vote() -> None:
    frames = [["京A1234X"], ["A12345"], ["京A12Y45"], ["京A12345X9"], ["京A12345"]]
    vote = vote_plate(frames)
    assert vote.text == "京A12345" and vote.by_character
