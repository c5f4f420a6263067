/* modelsync console: the Events page (the whole event and audit log). */
"use strict";

(function () {
  const log = window.ms.eventLog({});
  window.ms.fillNodeList("ev-nodes");
  window.ms.get("/v1/models").then((doc) => {
    document.getElementById("ev-models").replaceChildren(
      ...doc.models.map((m) => window.ms.el("option", {value: m.model})));
  }).catch((exc) => window.ms.setPageProblem(exc.message));
  window.ms.autoRefresh(() => log.load(), 5000);
})();
