// Stylesheets imported by the entry point: esbuild bundles them into assets/app.css.
declare module "*.css";
