# The Debian package of Quire, made by CPack: `cmake --build build --target
# package`, or `cpack -G DEB` in a build directory (docs/operations.md,
# "Installing the Debian package"; tools/package-check.sh checks it).
#
# It holds the install component "quire" only: /usr/bin/quire (installed by
# the root CMakeLists.txt) and the files below. These are EXCLUDE_FROM_ALL, so
# a plain `cmake --install` (tools/test.sh installs into build/install for the
# example backend) never writes /etc or /lib/systemd; the conformance suite's
# libraries and headers, in the default component, stay out of the package.

set(QUIRE_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})
set(QUIRE_PACKAGING_OUT ${CMAKE_BINARY_DIR}/packaging)
set(CPACK_PACKAGE_CONTACT "Quire Developers <dev@quire.invalid>")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(QUIRE_DEB_VERSION ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})

# The man page, with the project version, and changelog.Debian (lintian
# requires one), compressed with gzip -9n at build time.
configure_file(${QUIRE_PACKAGING_DIR}/quire.1.in ${QUIRE_PACKAGING_OUT}/quire.1 @ONLY)
string(TIMESTAMP QUIRE_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(${QUIRE_PACKAGING_DIR}/changelog.Debian.in
               ${QUIRE_PACKAGING_OUT}/changelog.Debian @ONLY)
set(QUIRE_PACKAGING_GZ "")
foreach(name quire.1 changelog.Debian)
  add_custom_command(
    OUTPUT ${QUIRE_PACKAGING_OUT}/${name}.gz
    COMMAND ${CMAKE_COMMAND} -DINPUT=${QUIRE_PACKAGING_OUT}/${name}
            -DOUTPUT=${QUIRE_PACKAGING_OUT}/${name}.gz -P ${QUIRE_PACKAGING_DIR}/gzip.cmake
    DEPENDS ${QUIRE_PACKAGING_OUT}/${name} ${QUIRE_PACKAGING_DIR}/gzip.cmake
    COMMENT "Compressing ${name} for the Debian package"
    VERBATIM)
  list(APPEND QUIRE_PACKAGING_GZ ${QUIRE_PACKAGING_OUT}/${name}.gz)
endforeach()
# In ALL: cpack installs without building.
add_custom_target(quire_packaging_files ALL DEPENDS ${QUIRE_PACKAGING_GZ})

install(FILES ${QUIRE_PACKAGING_DIR}/quire.service DESTINATION /lib/systemd/system
        COMPONENT quire EXCLUDE_FROM_ALL)
install(FILES ${QUIRE_PACKAGING_DIR}/quire.default DESTINATION /etc/default RENAME quire
        COMPONENT quire EXCLUDE_FROM_ALL)
install(FILES ${QUIRE_PACKAGING_OUT}/quire.1.gz DESTINATION share/man/man1
        COMPONENT quire EXCLUDE_FROM_ALL)
install(FILES ${QUIRE_PACKAGING_DIR}/copyright ${QUIRE_PACKAGING_OUT}/changelog.Debian.gz
        DESTINATION share/doc/quire COMPONENT quire EXCLUDE_FROM_ALL)
install(FILES ${QUIRE_PACKAGING_DIR}/lintian-overrides DESTINATION share/lintian/overrides
        RENAME quire COMPONENT quire EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME quire)
set(CPACK_PACKAGE_VENDOR "The Quire developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "self-hosted chat server with a built-in browser client")
set(CPACK_PACKAGE_DESCRIPTION_FILE ${QUIRE_PACKAGING_DIR}/description.txt)
# One component, installed as a plain (not per-component) package.
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_BINARY_DIR};quire;quire;/")
# Install through DESTDIR, so that the absolute destinations (/etc/default,
# /lib/systemd/system) land in the staging tree, never on the building
# machine; with DESTDIR the prefix is CPACK_INSTALL_PREFIX, whatever
# CMAKE_INSTALL_PREFIX the build has.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Stripped: the build's debug information stays in the build (the binary goes
# from about 40 MB to under 2 MB).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: the shared libraries' packages, found by dpkg-shlibdeps, plus
# adduser for the postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${QUIRE_PACKAGING_DIR}/postinst ${QUIRE_PACKAGING_DIR}/prerm ${QUIRE_PACKAGING_DIR}/postrm
    ${QUIRE_PACKAGING_DIR}/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# `package_source` (also made by include(CPack)): the tree without builds.
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/build[^/]*/" "/node_modules/" "/\\.cache/")
include(CPack)
