// placeholder: engine sources are added to src/engine/CMakeLists.txt
