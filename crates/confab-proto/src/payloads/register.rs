//! XEP-0077 In-Band Registration: `<query xmlns='jabber:iq:register'>`.

use super::data_form::DataForm;
use super::{child_text, expect, text_element, PayloadError};
use crate::xml::Element;

pub const NS: &str = "jabber:iq:register";

/// A registration query: a request for the fields (empty), the fields or the current
/// registration (in a result), a registration or password change (a set), or `<remove/>`.
///
/// A field present but empty (`<username/>`, as a host lists the fields it needs) is
/// `Some("")`; an absent one is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterQuery {
    /// `<registered/>`: the entity is already registered (XEP-0077 §3.1).
    pub registered: bool,
    pub instructions: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub email: Option<String>,
    /// `<remove/>`: cancel the registration (XEP-0077 §3.2).
    pub remove: bool,
    /// A XEP-0004 form used instead of (or besides) the fixed fields (XEP-0077 §4).
    pub form: Option<DataForm>,
}

impl TryFrom<&Element> for RegisterQuery {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        Ok(RegisterQuery {
            registered: el.get_child("registered", NS).is_some(),
            instructions: child_text(el, "instructions", NS),
            username: child_text(el, "username", NS),
            password: child_text(el, "password", NS),
            email: child_text(el, "email", NS),
            remove: el.get_child("remove", NS).is_some(),
            form: el
                .get_child("x", super::data_form::NS)
                .map(DataForm::try_from)
                .transpose()?,
        })
    }
}

impl From<RegisterQuery> for Element {
    fn from(q: RegisterQuery) -> Element {
        let mut e = Element::new("query", NS);
        if q.registered {
            e.push_child(Element::new("registered", NS));
        }
        for (name, value) in [
            ("instructions", q.instructions),
            ("username", q.username),
            ("password", q.password),
            ("email", q.email),
        ] {
            if let Some(v) = value {
                e.push_child(text_element(name, NS, v));
            }
        }
        if q.remove {
            e.push_child(Element::new("remove", NS));
        }
        if let Some(f) = q.form {
            e.push_child(f.into());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::data_form::FormType;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0077_examples() {
        // Example 1.
        let q = payload(
            "<iq type='get' id='reg1' to='shakespeare.lit'>
               <query xmlns='jabber:iq:register'/>
             </iq>",
        );
        assert_eq!(RegisterQuery::try_from(&q), Ok(RegisterQuery::default()));
        assert_eq!(Element::from(RegisterQuery::default()), q);
        // Example 2.
        let r = payload(
            "<iq type='result' id='reg1'>
               <query xmlns='jabber:iq:register'>
                 <instructions>
                   Choose a username and password for use with this service.
                   Please also provide your email address.
                 </instructions>
                 <username/>
                 <password/>
                 <email/>
               </query>
             </iq>",
        );
        let fields = RegisterQuery::try_from(&r).expect("parses");
        assert_eq!(fields.username.as_deref(), Some(""));
        assert_eq!(fields.password.as_deref(), Some(""));
        assert!(fields
            .instructions
            .as_deref()
            .is_some_and(|i| i.trim().starts_with("Choose a username")));
        assert!(same(&Element::from(fields), &r));
        // Example 3.
        let r = payload(
            "<iq type='result' id='reg1'>
               <query xmlns='jabber:iq:register'>
                 <registered/>
                 <username>juliet</username>
                 <password>R0m30</password>
                 <email>juliet@capulet.com</email>
               </query>
             </iq>",
        );
        let current = RegisterQuery::try_from(&r).expect("parses");
        assert!(current.registered);
        assert_eq!(current.username.as_deref(), Some("juliet"));
        assert!(same(&Element::from(current), &r));
        // Example 4.
        let s = payload(
            "<iq type='set' id='reg2'>
               <query xmlns='jabber:iq:register'>
                 <username>bill</username>
                 <password>Calliope</password>
                 <email>bard@shakespeare.lit</email>
               </query>
             </iq>",
        );
        let set = RegisterQuery::try_from(&s).expect("parses");
        assert_eq!(
            set,
            RegisterQuery {
                username: Some("bill".into()),
                password: Some("Calliope".into()),
                email: Some("bard@shakespeare.lit".into()),
                ..RegisterQuery::default()
            }
        );
        assert!(same(&Element::from(set), &s));
    }

    #[test]
    fn xep_0077_remove_and_form() {
        // Example 11: cancellation.
        let s = payload(
            "<iq type='set' from='bill@shakespeare.lit/globe' id='unreg1'>
               <query xmlns='jabber:iq:register'>
                 <remove/>
               </query>
             </iq>",
        );
        let q = RegisterQuery::try_from(&s).expect("parses");
        assert!(q.remove);
        assert!(same(&Element::from(q), &s));
        // Example 17: a submitted cancellation form.
        let s = payload(
            "<iq type='set' from='bill@shakespeare.lit/globe' to='shakespeare.lit' id='unreg2'>
               <query xmlns='jabber:iq:register'>
                 <x xmlns='jabber:x:data' type='submit'>
                   <field type='hidden' var='FORM_TYPE'>
                     <value>jabber:iq:register:cancel</value>
                   </field>
                   <field type='text-single' var='username'>
                     <value>bill@shakespeare.lit</value>
                   </field>
                   <field type='text-private' var='password'>
                     <value>theglobe</value>
                   </field>
                   <field type='text-single' var='x-mmn'>
                     <value>Throckmorton</value>
                   </field>
                 </x>
               </query>
             </iq>",
        );
        let q = RegisterQuery::try_from(&s).expect("parses");
        let form = q.form.as_ref().expect("form");
        assert_eq!(form.type_, FormType::Submit);
        assert_eq!(form.form_type(), Some("jabber:iq:register:cancel"));
        assert_eq!(form.value("password"), Some("theglobe"));
        assert!(same(&Element::from(q), &s));
    }
}
