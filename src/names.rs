//! `FromStr` and `Display` for the settings' field-less enums (engine kind, execution provider,
//! pooler) from one table of names, so a setting reads and prints the same everywhere.

/// `a`, `a or b`, `a, b or c`.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// `enum_names!(Type { Variant => "name" | "alias", ... })`: parsing is case-insensitive and
/// takes the aliases; printing gives the first name.
#[macro_export]
macro_rules! enum_names {
    ($ty:ty { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($name $(| $alias)* => Ok(Self::$variant),)+
                    other => Err(format!(
                        "`{other}` is not {}",
                        $crate::names::one_of(&[$($name),+])
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq)]
    enum Colour {
        Red,
        Green,
    }
    crate::enum_names!(Colour { Red => "red" | "r", Green => "green" });

    #[test]
    fn names_parse_print_and_explain() {
        assert_eq!("R".parse::<Colour>(), Ok(Colour::Red));
        assert_eq!("green".parse::<Colour>(), Ok(Colour::Green));
        assert_eq!(Colour::Red.to_string(), "red");
        assert_eq!(
            "blue".parse::<Colour>(),
            Err("`blue` is not red or green".to_string())
        );
        assert_eq!(super::one_of(&["a", "b", "c"]), "a, b or c");
    }
}
