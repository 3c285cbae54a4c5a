"""Class names from an ImageFolder zip's paths (plain Python, no database)."""

import unicodedata

from apps.datasets import labels


def test_a_wrapping_folder_is_the_root_and_not_a_class():
    names = ["flowers/tulip/1.jpg", "flowers/rose/2.jpg", "flowers/rose/deep/3.jpg"]
    root = labels.common_root(names)
    assert root == "flowers"
    assert [labels.class_of(n, root) for n in names] == ["tulip", "rose", "rose"]  # nested folders: the top class


def test_class_folders_at_the_top_have_no_root():
    names = ["tulip/1.jpg", "rose/2.jpg"]
    assert labels.common_root(names) is None
    assert [labels.class_of(n, None) for n in names] == ["tulip", "rose"]
    # One class folder only, directly at the top: it is the class, not a root (nothing sits two deep).
    assert labels.common_root(["tulip/1.jpg", "tulip/2.jpg"]) is None


def test_a_stray_file_beside_the_class_folders_has_no_class():
    names = ["tulip/1.jpg", "readme.png"]
    assert labels.common_root(names) is None
    assert labels.class_of("readme.png", None) is None
    assert "not inside a class folder" in labels.name_problem(None)


def test_names_keep_spaces_and_unicode_in_one_spelling():
    decomposed = unicodedata.normalize("NFD", "crème brûlée")  # as a zip made on macOS spells it
    assert labels.class_of(f"{decomposed}/1.png", None) == "crème brûlée"
    assert labels.class_of(" red tulips /1.png", None) == "red tulips"
    assert labels.name_problem("red tulips") is None and labels.name_problem("猫") is None


def test_bad_class_names_say_what_to_do():
    assert "no name" in labels.name_problem("")
    assert "not a class name" in labels.name_problem("..")
    assert "over 64" in labels.name_problem("x" * 65) and labels.name_problem("x" * 64) is None
    assert "control characters" in labels.name_problem("a\tb")
