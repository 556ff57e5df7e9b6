// Every string the widget shows or announces. Add a language with
// `Corrigenda.strings.xx = {...}`; missing keys fall back to English.

export const strings = {
  en: {
    title: "Feedback on this answer",
    ask: "Was this right?",
    yes: "Yes",
    no: "No",
    flag: "Report",
    pick: "Pick the right label",
    many: "Pick all that apply",
    filter: "Filter labels",
    edit: "Correct the text",
    why: "What is wrong?",
    comment: "Comment (optional)",
    send: "Send",
    cancel: "Cancel",
    sending: "Sending…",
    saved: "Saved, thank you",
    retry: "Saved here; will retry",
    error: "Could not send",
  },
  fr: {
    title: "Votre avis sur cette réponse",
    ask: "Est-ce juste ?",
    yes: "Oui",
    no: "Non",
    flag: "Signaler",
    pick: "Choisissez la bonne étiquette",
    many: "Choisissez toutes celles qui conviennent",
    filter: "Filtrer les étiquettes",
    edit: "Corrigez le texte",
    why: "Quel est le problème ?",
    comment: "Commentaire (facultatif)",
    send: "Envoyer",
    cancel: "Annuler",
    sending: "Envoi…",
    saved: "Enregistré, merci",
    retry: "Gardé ici ; nouvel essai bientôt",
    error: "Envoi impossible",
  },
};

/** The strings for a BCP 47 tag such as "fr-CA": exact, then language, then English. */
export function stringsFor(lang = "") {
  const tag = lang.toLowerCase();
  return { ...strings.en, ...(strings[tag] || strings[tag.split("-")[0]]) };
}
