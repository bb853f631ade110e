//! XEP-0004 Data Forms: `<x xmlns='jabber:x:data' type='…'>` with fields, and XEP-0068's
//! `FORM_TYPE` hidden field.

use super::{child_text, children_text, expect, text_element, PayloadError};
use crate::xml::Element;

pub const NS: &str = "jabber:x:data";

/// The `type` of a form (XEP-0004 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormType {
    Form,
    Submit,
    Cancel,
    Result,
}

impl FormType {
    pub const ALL: [FormType; 4] = [
        FormType::Form,
        FormType::Submit,
        FormType::Cancel,
        FormType::Result,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FormType::Form => "form",
            FormType::Submit => "submit",
            FormType::Cancel => "cancel",
            FormType::Result => "result",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The `type` of a field (XEP-0004 §3.3). Absent means text-single.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Boolean,
    Fixed,
    Hidden,
    JidMulti,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextPrivate,
    TextSingle,
}

impl FieldType {
    pub const ALL: [FieldType; 10] = [
        FieldType::Boolean,
        FieldType::Fixed,
        FieldType::Hidden,
        FieldType::JidMulti,
        FieldType::JidSingle,
        FieldType::ListMulti,
        FieldType::ListSingle,
        FieldType::TextMulti,
        FieldType::TextPrivate,
        FieldType::TextSingle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Fixed => "fixed",
            FieldType::Hidden => "hidden",
            FieldType::JidMulti => "jid-multi",
            FieldType::JidSingle => "jid-single",
            FieldType::ListMulti => "list-multi",
            FieldType::ListSingle => "list-single",
            FieldType::TextMulti => "text-multi",
            FieldType::TextPrivate => "text-private",
            FieldType::TextSingle => "text-single",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One `<option/>` of a list field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldOption {
    pub label: Option<String>,
    pub value: String,
}

/// One `<field/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// Required except for `fixed` fields (XEP-0004 §3.2).
    pub var: Option<String>,
    /// `None` when the attribute is absent (text-single by default).
    pub type_: Option<FieldType>,
    pub label: Option<String>,
    pub desc: Option<String>,
    pub required: bool,
    pub values: Vec<String>,
    pub options: Vec<FieldOption>,
}

impl Field {
    /// A field with a var and values (the usual shape in submitted and result forms).
    pub fn new(var: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Field {
            var: Some(var.to_string()),
            values: values.into_iter().map(Into::into).collect(),
            ..Field::default()
        }
    }

    /// The hidden `FORM_TYPE` field of XEP-0068.
    pub fn form_type(value: &str) -> Self {
        Field {
            type_: Some(FieldType::Hidden),
            ..Field::new("FORM_TYPE", [value])
        }
    }

    /// The first value.
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    /// The type that applies: text-single when none is given.
    pub fn effective_type(&self) -> FieldType {
        self.type_.unwrap_or(FieldType::TextSingle)
    }
}

impl TryFrom<&Element> for Field {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "field", NS)?;
        let type_ = match el.get_attr("type") {
            None => None,
            Some(t) => Some(FieldType::from_name(t).ok_or(PayloadError::Invalid("field type"))?),
        };
        let var = el.get_attr("var").map(str::to_string);
        if var.is_none() && type_ != Some(FieldType::Fixed) {
            return Err(PayloadError::MissingAttribute {
                element: "field",
                attr: "var",
            });
        }
        let options = el
            .elements()
            .filter(|e| e.is("option", NS))
            .map(|o| FieldOption {
                label: o.get_attr("label").map(str::to_string),
                value: child_text(o, "value", NS).unwrap_or_default(),
            })
            .collect();
        Ok(Field {
            var,
            type_,
            label: el.get_attr("label").map(str::to_string),
            desc: child_text(el, "desc", NS),
            required: el.get_child("required", NS).is_some(),
            values: children_text(el, "value", NS),
            options,
        })
    }
}

impl From<Field> for Element {
    fn from(f: Field) -> Element {
        let mut e = Element::new("field", NS);
        if let Some(t) = f.type_ {
            e.set_attr("type", t.as_str());
        }
        if let Some(v) = f.var {
            e.set_attr("var", v);
        }
        if let Some(l) = f.label {
            e.set_attr("label", l);
        }
        if let Some(d) = f.desc {
            e.push_child(text_element("desc", NS, d));
        }
        if f.required {
            e.push_child(Element::new("required", NS));
        }
        for o in f.options {
            let mut oe = Element::new("option", NS);
            if let Some(l) = o.label {
                oe.set_attr("label", l);
            }
            e.push_child(oe.child(text_element("value", NS, o.value)));
        }
        for v in f.values {
            e.push_child(text_element("value", NS, v));
        }
        e
    }
}

/// A data form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataForm {
    pub type_: FormType,
    pub title: Option<String>,
    pub instructions: Vec<String>,
    pub fields: Vec<Field>,
    /// The `<reported/>` field definitions of a multi-item result.
    pub reported: Option<Vec<Field>>,
    /// The `<item/>`s of a multi-item result.
    pub items: Vec<Vec<Field>>,
}

impl DataForm {
    pub fn new(type_: FormType, fields: Vec<Field>) -> Self {
        DataForm {
            type_,
            title: None,
            instructions: Vec::new(),
            fields,
            reported: None,
            items: Vec::new(),
        }
    }

    /// The value of the hidden `FORM_TYPE` field (XEP-0068), if there is one.
    pub fn form_type(&self) -> Option<&str> {
        self.field("FORM_TYPE")
            .filter(|f| f.type_ == Some(FieldType::Hidden) || self.type_ == FormType::Submit)
            .and_then(Field::value)
    }

    /// The first field with this var.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// The first value of the field with this var.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.field(var).and_then(Field::value)
    }
}

fn fields_of(el: &Element) -> Result<Vec<Field>, PayloadError> {
    el.elements()
        .filter(|e| e.is("field", NS))
        .map(Field::try_from)
        .collect()
}

impl TryFrom<&Element> for DataForm {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "x", NS)?;
        let type_ = el.get_attr("type").ok_or(PayloadError::MissingAttribute {
            element: "x",
            attr: "type",
        })?;
        let type_ = FormType::from_name(type_).ok_or(PayloadError::Invalid("form type"))?;
        let reported = el.get_child("reported", NS).map(fields_of).transpose()?;
        let items = el
            .elements()
            .filter(|e| e.is("item", NS))
            .map(fields_of)
            .collect::<Result<_, _>>()?;
        Ok(DataForm {
            type_,
            title: child_text(el, "title", NS),
            instructions: children_text(el, "instructions", NS),
            fields: fields_of(el)?,
            reported,
            items,
        })
    }
}

impl From<DataForm> for Element {
    fn from(f: DataForm) -> Element {
        let mut e = Element::new("x", NS).attr("type", f.type_.as_str());
        if let Some(t) = f.title {
            e.push_child(text_element("title", NS, t));
        }
        for i in f.instructions {
            e.push_child(text_element("instructions", NS, i));
        }
        if let Some(r) = f.reported {
            let mut re = Element::new("reported", NS);
            for field in r {
                re.push_child(field.into());
            }
            e.push_child(re);
        }
        for item in f.items {
            let mut ie = Element::new("item", NS);
            for field in item {
                ie.push_child(field.into());
            }
            e.push_child(ie);
        }
        for field in f.fields {
            e.push_child(field.into());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same, xml};

    #[test]
    fn xep_0077_registration_form_and_submission() {
        // XEP-0077 Example 9 (a form inside the registration query) and Example 10.
        let q = payload(
            "<iq type='result' from='contests.shakespeare.lit'
                 to='juliet@capulet.com/balcony' id='reg3'>
               <query xmlns='jabber:iq:register'>
                 <instructions>Use the enclosed form to register.</instructions>
                 <x xmlns='jabber:x:data' type='form'>
                   <title>Contest Registration</title>
                   <instructions>
                     Please provide the following information
                     to sign up for our special contests!
                   </instructions>
                   <field type='hidden' var='FORM_TYPE'>
                     <value>jabber:iq:register</value>
                   </field>
                   <field type='text-single' label='Given Name' var='first'>
                     <required/>
                   </field>
                   <field type='text-single' label='Family Name' var='last'>
                     <required/>
                   </field>
                   <field type='text-single' label='Email Address' var='email'>
                     <required/>
                   </field>
                   <field type='list-single' label='Gender' var='x-gender'>
                     <option label='Male'><value>M</value></option>
                     <option label='Female'><value>F</value></option>
                   </field>
                 </x>
               </query>
             </iq>",
        );
        let x = q.get_child("x", NS).expect("form");
        let form = DataForm::try_from(x).expect("parses");
        assert_eq!(form.type_, FormType::Form);
        assert_eq!(form.title.as_deref(), Some("Contest Registration"));
        assert_eq!(form.form_type(), Some("jabber:iq:register"));
        assert_eq!(form.fields.len(), 5);
        assert!(form.field("first").is_some_and(|f| f.required));
        let gender = form.field("x-gender").expect("field");
        assert_eq!(gender.type_, Some(FieldType::ListSingle));
        assert_eq!(
            gender.options,
            vec![
                FieldOption {
                    label: Some("Male".into()),
                    value: "M".into()
                },
                FieldOption {
                    label: Some("Female".into()),
                    value: "F".into()
                },
            ]
        );
        assert!(same(&Element::from(form), x));

        let submit = xml("<x xmlns='jabber:x:data' type='submit'>
               <field type='hidden' var='FORM_TYPE'>
                 <value>jabber:iq:register</value>
               </field>
               <field type='text-single' label='Given Name' var='first'>
                 <value>Juliet</value>
               </field>
               <field type='text-single' label='Family Name' var='last'>
                 <value>Capulet</value>
               </field>
               <field type='text-single' label='Email Address' var='email'>
                 <value>juliet@capulet.com</value>
               </field>
               <field type='list-single' label='Gender' var='x-gender'>
                 <value>F</value>
               </field>
             </x>");
        let form = DataForm::try_from(&submit).expect("parses");
        assert_eq!(form.type_, FormType::Submit);
        assert_eq!(form.value("email"), Some("juliet@capulet.com"));
        assert_eq!(form.value("x-gender"), Some("F"));
        assert!(same(&Element::from(form), &submit));
    }

    #[test]
    fn xep_0004_multi_item_result() {
        // XEP-0004 "Service Returns Search Results", shortened to two items.
        let x = xml("<x xmlns='jabber:x:data' type='result'>
               <title>Joogle Search: verona</title>
               <reported>
                 <field var='name'/>
                 <field var='url'/>
               </reported>
               <item>
                 <field var='name'>
                   <value>Comune di Verona - Benvenuti nel sito ufficiale</value>
                 </field>
                 <field var='url'>
                   <value>http://www.comune.verona.it/</value>
                 </field>
               </item>
               <item>
                 <field var='name'>
                   <value>benvenuto!</value>
                 </field>
                 <field var='url'>
                   <value>http://www.hellasverona.it/</value>
                 </field>
               </item>
             </x>");
        let form = DataForm::try_from(&x).expect("parses");
        assert_eq!(form.reported.as_ref().map(Vec::len), Some(2));
        assert_eq!(form.items.len(), 2);
        assert_eq!(form.items[1][0].value(), Some("benvenuto!"));
        assert!(same(&Element::from(form), &x));
    }

    #[test]
    fn invalid_forms() {
        assert!(DataForm::try_from(&Element::new("x", NS)).is_err());
        assert!(DataForm::try_from(&Element::new("x", NS).attr("type", "draft")).is_err());
        let no_var = Element::new("x", NS)
            .attr("type", "submit")
            .child(Element::new("field", NS));
        assert!(DataForm::try_from(&no_var).is_err());
        let fixed = Element::new("x", NS).attr("type", "form").child(
            Element::new("field", NS)
                .attr("type", "fixed")
                .child(Element::new("value", NS).text("Section 1")),
        );
        assert!(DataForm::try_from(&fixed).is_ok());
        let bad_type = Element::new("field", NS)
            .attr("var", "a")
            .attr("type", "colour");
        assert!(Field::try_from(&bad_type).is_err());
    }
}
