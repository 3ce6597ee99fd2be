from esp_secure_build.scons.platformio import esp_secure_release

esp_secure_release(DefaultEnvironment())
