// The admin page's only script: the Task Subject's live preview, rendered on the server
// by the router's own rule (GET /ui/preview), shown as the template is typed.
"use strict";
(function () {
  const field = document.getElementById("salesforce_subject_template");
  const out = document.getElementById("preview");
  if (!field || !out) { return; }
  let timer = null;
  async function render() {
    const answer = await fetch("/ui/preview?template=" + encodeURIComponent(field.value),
                               { credentials: "same-origin" });
    const body = await answer.json();
    out.textContent = body.subject !== undefined ? body.subject : body.error;
    out.className = body.subject !== undefined ? "" : "error";
  }
  field.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(render, 250);
  });
  render();
})();
