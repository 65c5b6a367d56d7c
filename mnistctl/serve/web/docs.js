// mnistctl serve: the interactive API docs (Swagger UI, served by mnistctl itself: no CDN) over /openapi.json
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
document.body.dataset.ready = "true";
